//! No GPU needed: naga parses and validates every shader; every kernel descriptor matches its
//! WGSL entry point (bindings, access modes, params struct size); every .wgsl file is used.

use dinoscope::gpu::{
    half_bindings, out_bindings, shader_source, shader_source_typed, Access, DType, Types, SHADERS,
};
use dinoscope::kernels::all_kernels;
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// What a shader's `enable` directives ask of the validator (everything else validates with
/// WebGPU's defaults).
fn capabilities(src: &str) -> Capabilities {
    let mut caps = Capabilities::default();
    for (enable, cap) in [
        ("enable f16;", Capabilities::SHADER_FLOAT16),
        (
            "enable wgpu_cooperative_matrix;",
            Capabilities::COOPERATIVE_MATRIX | Capabilities::SUBGROUP,
        ),
    ] {
        if src.lines().any(|l| l.trim() == enable) {
            caps |= cap;
        }
    }
    // Subgroup operations need no directive in wgpu, only the adapter's SUBGROUP feature.
    if src.contains("subgroupBroadcast(") || src.contains("subgroupShuffleXor(") {
        caps |= Capabilities::SUBGROUP;
    }
    caps
}

fn parse(name: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = shader_source(name).expect("registered shader");
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "shader '{name}' does not parse:\n{}",
            e.emit_to_string(&src)
        )
    });
    let info = Validator::new(ValidationFlags::all(), capabilities(&src))
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "shader '{name}' does not validate:\n{}",
                e.emit_to_string(&src)
            )
        });
    (module, info)
}

#[test]
fn every_shader_parses_and_validates() {
    for (name, _) in SHADERS {
        parse(name);
    }
}

#[test]
fn kernel_descriptors_match_wgsl() {
    for k in all_kernels() {
        let (module, info) = parse(k.shader);
        let idx = module
            .entry_points
            .iter()
            .position(|e| e.name == k.entry)
            .unwrap_or_else(|| panic!("{}: no entry point '{}'", k.shader, k.entry));
        let ep_info = info.get_entry_point(idx);
        let mut used = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else {
                continue;
            };
            if ep_info[handle].is_empty() {
                continue;
            }
            assert_eq!(binding.group, 0, "{}: only group 0 is used", k.entry);
            match var.space {
                naga::AddressSpace::Uniform => {
                    assert_eq!(binding.binding, 0, "{}: params must be binding 0", k.entry);
                    let size = module.types[var.ty].inner.size(module.to_ctx()) as usize;
                    assert_eq!(
                        size, k.params_size,
                        "{}: WGSL Params is {size} bytes, Rust {}",
                        k.entry, k.params_size
                    );
                }
                naga::AddressSpace::Storage { access } => {
                    let a = if access.contains(naga::StorageAccess::STORE) {
                        Access::ReadWrite
                    } else {
                        Access::Read
                    };
                    used.push((binding.binding, a));
                }
                _ => panic!("{}: unexpected resource space", k.entry),
            }
        }
        used.sort_by_key(|b| b.0);
        let mut declared = k.bindings.to_vec();
        declared.sort_by_key(|b| b.0);
        // Every binding the entry point uses must be declared with the same access; declared
        // ones it does not use are allowed only if they exist in the module.
        for u in &used {
            assert!(
                declared.contains(u),
                "{}: uses binding {:?} not declared as such ({declared:?})",
                k.entry,
                u
            );
        }
        for d in &declared {
            let exists = module.global_variables.iter().any(|(_, v)| {
                v.binding.as_ref().is_some_and(|b| b.binding == d.0)
                    && matches!(v.space, naga::AddressSpace::Storage { access }
                        if (access.contains(naga::StorageAccess::STORE)) == (d.1 == Access::ReadWrite))
            });
            assert!(
                exists,
                "{}: declared binding {d:?} is not in the shader",
                k.entry
            );
        }
        assert!(
            declared.len() <= 8,
            "{}: more than 8 storage buffers (WebGPU's default limit)",
            k.entry
        );
    }
}

#[test]
fn every_wgsl_file_is_registered_and_used() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let kernels = all_kernels();
    for entry in std::fs::read_dir(&dir).expect("shaders dir") {
        let path = entry.expect("dir entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") || stem == "common" {
            continue;
        }
        // A file is a shader of its own, or the part a derived shader of the same name adds
        // to another (attention_pairs.wgsl).
        assert!(
            SHADERS.iter().any(|(n, _)| *n == stem) || shader_source(&stem).is_some(),
            "{stem}.wgsl is not in the shader registry"
        );
        assert!(
            kernels.iter().any(|k| k.shader == stem),
            "{stem}.wgsl has no kernel using it"
        );
    }
}

#[test]
fn workgroup_memory_fits_webgpu_defaults() {
    // WebGPU counts the workgroup variables each entry point uses (the prelude's reduction
    // scratch is only counted where a kernel reduces). Every shader a kernel uses, derived
    // ones included (attention_pairs_wg runs in the browser).
    let mut names: Vec<&str> = all_kernels().iter().map(|k| k.shader).collect();
    names.extend(SHADERS.iter().map(|(n, _)| *n));
    names.sort_unstable();
    names.dedup();
    for name in names {
        let src = shader_source(name).expect("registered shader");
        // Native-only kernels (cooperative matrices) are checked against the adapter's own limit
        // when the device opens (see `coop_config`).
        if src.contains("enable wgpu_cooperative_matrix;") {
            continue;
        }
        let (module, info) = parse(name);
        for (i, ep) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let bytes: u32 = module
                .global_variables
                .iter()
                .filter(|(h, v)| v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
                .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
                .sum();
            // The tiled attention forward runs only where the adapter's limit holds what the
            // launcher counts (`Forward::runs`); so that count must be right.
            let limit = match name {
                "attention_tiled" => dinoscope::kernels::attention::TILED_WORKGROUP_BYTES as u32,
                _ => 16384,
            };
            assert!(
                bytes <= limit,
                "{name}::{}: {bytes} bytes of workgroup memory > {limit}",
                ep.name
            );
        }
    }
}

/// Parses and validates `name` compiled with `types`; its `S` and `O` bindings hold those types.
fn check_variant(name: &str, types: Types) {
    let src = shader_source_typed(name, types).expect("registered shader");
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "{types:?} variant of '{name}' does not parse:\n{}",
            e.emit_to_string(&src)
        )
    });
    Validator::new(ValidationFlags::all(), capabilities(&src))
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "{types:?} variant of '{name}' does not validate:\n{}",
                e.emit_to_string(&src)
            )
        });
    let scalar_of = |d: DType| match d {
        DType::F32 => naga::Scalar::F32,
        DType::F16 => naga::Scalar::F16,
    };
    for (_, var) in module.global_variables.iter() {
        let Some(b) = &var.binding else { continue };
        let want = if half_bindings(name).contains(&b.binding) {
            types.s
        } else if out_bindings(name).contains(&b.binding) {
            types.o
        } else {
            continue;
        };
        let naga::TypeInner::Array { base, .. } = module.types[var.ty].inner else {
            panic!("{name}: binding {} is not an array", b.binding);
        };
        let scalar = match module.types[base].inner {
            naga::TypeInner::Scalar(s) => s,
            naga::TypeInner::Vector { scalar, .. } => scalar,
            ref other => panic!("{name}: binding {} holds {other:?}", b.binding),
        };
        assert_eq!(scalar, scalar_of(want), "{name}: binding {}", b.binding);
    }
}

#[test]
fn f16_variants_parse_and_validate_with_half_storage() {
    let mut with_half = 0;
    for (name, _) in SHADERS {
        if half_bindings(name).is_empty() {
            continue;
        }
        with_half += 1;
        check_variant(name, Types::of(DType::F16));
    }
    // The inference path: matmul (both kernels), layer norm, attention, GELU, elementwise,
    // tokens, patch embedding, rope, position resize, and the casts.
    assert!(
        with_half >= 11,
        "only {with_half} shaders have f16 variants"
    );
}

#[test]
fn matmuls_compile_with_f16_operands_and_f32_products() {
    let mixed = Types {
        s: DType::F16,
        o: DType::F32,
    };
    let with_out: Vec<&str> = SHADERS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !out_bindings(n).is_empty())
        .collect();
    for name in &with_out {
        check_variant(name, mixed);
    }
    for name in [
        "matmul",
        "matmul_v4",
        "matmul_coop",
        "matmul_coop8",
        "matmul_coop_wide",
        "matmul_coop8_wide",
    ] {
        assert!(
            !out_bindings(name).is_empty(),
            "{name} has no O bindings: mixed-precision backward passes need them"
        );
    }
    check_variant("matmul_coop8", mixed);
    check_variant("matmul_coop_wide", mixed);
    check_variant("matmul_coop8_wide", mixed);
}
