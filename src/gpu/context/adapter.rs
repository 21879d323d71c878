//! Which adapter a device opens on, and the name it is known by.

use super::*;

pub(super) async fn pick_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
    choice: &AdapterChoice,
) -> Result<wgpu::Adapter> {
    let hint = "; on Linux without a GPU install the software Vulkan driver \
                (apt-get install mesa-vulkan-drivers), or try --backend gl";
    if let Some(name) = &choice.adapter {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let adapters = instance.enumerate_adapters(backends).await;
            let names: Vec<String> = adapters
                .iter()
                .map(|a| {
                    let i = named(a.get_info());
                    format!("{} ({:?})", i.name, i.backend)
                })
                .collect();
            let want = name.to_lowercase();
            // The names printed elsewhere, an unnamed adapter's included, pick it.
            return adapters
                .into_iter()
                .find(|a| named(a.get_info()).name.to_lowercase().contains(&want))
                .ok_or_else(|| {
                    GpuError::NoAdapter(format!(
                        " whose name contains '{name}'; available (name, then backend in \
                         parentheses, which --backend chooses): {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ))
                });
        }
        #[cfg(target_arch = "wasm32")]
        log::warn!("adapter choice by name ('{name}') is not available in the browser");
    }
    let _ = backends;
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
        .map_err(|e| GpuError::NoAdapter(format!(" ({e}){hint}")))
}

/// The adapter's info with a name to print: browsers withhold the adapter's name (Chromium's
/// `GPUAdapterInfo.description` is empty), which left reports with a blank where it goes.
pub(super) fn named(mut info: wgpu::AdapterInfo) -> wgpu::AdapterInfo {
    if info.name.trim().is_empty() {
        let kind = if info.device_type == wgpu::DeviceType::Cpu {
            "software adapter"
        } else {
            "GPU"
        };
        info.name = if info.backend == wgpu::Backend::BrowserWebGpu {
            format!("the browser's {kind} (its name withheld)")
        } else {
            format!("unnamed {kind}")
        };
    }
    info
}

#[cfg(test)]
mod tests {
    use super::named;
    use wgpu::{AdapterInfo, Backend, DeviceType};

    #[test]
    fn an_adapter_without_a_name_gets_one_that_says_why() {
        let web = named(AdapterInfo::new(DeviceType::Cpu, Backend::BrowserWebGpu));
        assert_eq!(
            web.name,
            "the browser's software adapter (its name withheld)"
        );
        let native = named(AdapterInfo::new(DeviceType::DiscreteGpu, Backend::Vulkan));
        assert_eq!(native.name, "unnamed GPU");
        let mut given = AdapterInfo::new(DeviceType::Cpu, Backend::Vulkan);
        given.name = "llvmpipe".into();
        assert_eq!(named(given).name, "llvmpipe");
    }
}
