//! No GPU needed: every kernel, in every storage type it runs in, translates to Metal's shading
//! language, and every one but the cooperative-matrix kernels (which wgpu offers on Vulkan and
//! Metal only) to Direct3D 12's, through naga's MSL and HLSL writers with the options wgpu gives
//! them for the runtime's shader modules (index clamps unless the shader's indexes are proven,
//! no loop bounding). CI has neither platform's GPU, so this is where a construct one of those
//! writers rejects (and that would fail the kernel's pipeline for every user of that platform)
//! shows up first. Apple's and Microsoft's shader compilers are not run.

use dinoscope::gpu::{
    half_bindings, indexes_proven, out_bindings, shader_source_typed, DType, Types,
};
use dinoscope::kernels::all_kernels;
use naga::back::pipeline_constants::process_overrides;
use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::ShaderStage;

/// The storage types a kernel's shader is compiled in: f32 always; f16 storage (and f16
/// operands with f32 products) where its bindings hold `S` or `O`.
fn types_of(shader: &str) -> Vec<Types> {
    let mut all = vec![Types::of(DType::F32)];
    if !half_bindings(shader).is_empty() {
        all.push(Types::of(DType::F16));
    }
    if !out_bindings(shader).is_empty() {
        all.push(Types {
            s: DType::F16,
            o: DType::F32,
        });
    }
    all
}

/// Everything a validator may need: translation is checked here, validation in shaders.rs.
fn validate(module: &naga::Module) -> Result<naga::valid::ModuleInfo, String> {
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(module)
        .map_err(|e| format!("{e:?}"))
}

/// The pipeline constants a Metal device gives `shader`: the cooperative matmul's 8×8 matrices
/// on Apple's 32-lane simdgroups (eight of them a workgroup, so each invocation loads one or two
/// vec4 of a slice; lavapipe's 8 lanes load four or eight); the rest at their defaults, since
/// what the other kernels' overrides change are sizes and flags, not the constructs used.
fn metal_constants(shader: &str) -> PipelineConstants {
    let mut constants = PipelineConstants::default();
    if shader.starts_with("matmul_coop8") {
        constants.insert("WG".to_string(), 256.0);
    }
    constants
}

/// The module of `entry` in `shader` compiled with `types` and `constants`, ready for a writer.
fn resolved(
    shader: &str,
    entry: &str,
    types: Types,
    constants: &PipelineConstants,
) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let src = shader_source_typed(shader, types).ok_or("not registered")?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let info = validate(&module)?;
    let (module, info) = process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, entry)),
        constants,
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok((module.into_owned(), info.into_owned()))
}

/// naga's index policy for `shader`, as wgpu-hal sets it from the module's runtime checks.
fn policy(shader: &str) -> naga::proc::BoundsCheckPolicy {
    if indexes_proven(shader) {
        naga::proc::BoundsCheckPolicy::Unchecked
    } else {
        naga::proc::BoundsCheckPolicy::Restrict
    }
}

fn to_msl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    shader: &str,
    entry: &str,
) -> Result<(), String> {
    use naga::back::msl;
    let options = msl::Options {
        // Metal 2.3 (macOS 11) is what wgpu asks for cooperative matrices; the other kernels
        // translate the same on later versions.
        lang_version: (2, 3),
        fake_missing_bindings: true,
        zero_initialize_workgroup_memory: true,
        force_loop_bounding: false,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: policy(shader),
            buffer: policy(shader),
            image_load: policy(shader),
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    msl::write_string(module, info, &options, &pipeline)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn to_hlsl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    shader: &str,
    entry: &str,
) -> Result<(), String> {
    use naga::back::hlsl;
    let options = hlsl::Options {
        // f16 storage needs shader model 6.2, which every adapter with SHADER_F16 has.
        shader_model: hlsl::ShaderModel::V6_2,
        fake_missing_bindings: true,
        zero_initialize_workgroup_memory: true,
        restrict_indexing: !indexes_proven(shader),
        force_loop_bounding: false,
        ..Default::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
    };
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &options, &pipeline)
        .write(module, info, None)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn every_kernel_translates_to_msl_and_hlsl() {
    let mut failures = Vec::new();
    let mut translated = 0;
    for k in all_kernels() {
        for types in types_of(k.shader) {
            let what = format!("{}::{} ({types:?})", k.shader, k.entry);
            let constants = metal_constants(k.shader);
            let (module, info) = match resolved(k.shader, k.entry, types, &constants) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            if let Err(e) = to_msl(&module, &info, k.shader, k.entry) {
                failures.push(format!("{what} to MSL: {e}"));
            }
            // wgpu offers cooperative matrices on Vulkan and Metal only.
            let coop = shader_source_typed(k.shader, types)
                .is_some_and(|s| s.contains("enable wgpu_cooperative_matrix;"));
            if !coop {
                if let Err(e) = to_hlsl(&module, &info, k.shader, k.entry) {
                    failures.push(format!("{what} to HLSL: {e}"));
                }
            }
            translated += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {translated} translations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(translated > 100, "only {translated} kernels translated");
}
