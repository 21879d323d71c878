//! Shader registry: every WGSL source embedded at compile time, and the kernel descriptors that
//! say which entry point of which shader takes which bindings.

/// Helpers prepended to every shader (erf, grid indexing).
pub const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// Every shader by name (file stem under `shaders/`).
pub const SHADERS: &[(&str, &str)] = &[
    ("adamw", include_str!("../../shaders/adamw.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    (
        "attention_coop",
        include_str!("../../shaders/attention_coop.wgsl"),
    ),
    (
        "attention_tiled",
        include_str!("../../shaders/attention_tiled.wgsl"),
    ),
    ("cast", include_str!("../../shaders/cast.wgsl")),
    (
        "cross_entropy",
        include_str!("../../shaders/cross_entropy.wgsl"),
    ),
    (
        "elementwise",
        include_str!("../../shaders/elementwise.wgsl"),
    ),
    ("ema", include_str!("../../shaders/ema.wgsl")),
    ("gather", include_str!("../../shaders/gather.wgsl")),
    ("gelu", include_str!("../../shaders/gelu.wgsl")),
    ("interp", include_str!("../../shaders/interp.wgsl")),
    ("layernorm", include_str!("../../shaders/layernorm.wgsl")),
    ("loss_scale", include_str!("../../shaders/loss_scale.wgsl")),
    ("losses", include_str!("../../shaders/losses.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_v4", include_str!("../../shaders/matmul_v4.wgsl")),
    (
        "matmul_coop",
        include_str!("../../shaders/matmul_coop.wgsl"),
    ),
    ("normalize", include_str!("../../shaders/normalize.wgsl")),
    (
        "patch_embed",
        include_str!("../../shaders/patch_embed.wgsl"),
    ),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("rope", include_str!("../../shaders/rope.wgsl")),
    ("softmax", include_str!("../../shaders/softmax.wgsl")),
    ("tokens", include_str!("../../shaders/tokens.wgsl")),
];

/// The full source of a shader (prelude + file) with f32 storage, or `None` for an unknown name.
pub fn shader_source(name: &str) -> Option<String> {
    shader_source_as(name, DType::F32)
}

/// The segmented reductions of common.wgsl through subgroup shuffles, for the row kernels'
/// `_sg` variants. The tree levels that span more than one subgroup go through workgroup
/// memory as in `seg_sum`; the rest pair the same partial sums by `subgroupShuffleXor` (IEEE
/// addition is commutative), so every result is bit-identical to `seg_sum`'s. A subgroup is
/// taken to be `sgs` consecutive invocations of the workgroup, as on the drivers seen so far.
const SEG_SG: &str = "
fn seg_sum_sg(lid: u32, lanes: u32, sgs: u32, v: f32) -> f32 {
    if (lanes == 1u) { return v; }
    let lane = lid % lanes;
    var w = v;
    if (lanes > sgs) {
        red[lid] = v;
        workgroupBarrier();
        for (var s = lanes >> 1u; s >= sgs; s >>= 1u) {
            if (lane < s) { red[lid] += red[lid + s]; }
            workgroupBarrier();
        }
        w = red[lid - lane + lane % sgs];
        workgroupBarrier();
    }
    for (var s = min(lanes, sgs) >> 1u; s > 0u; s >>= 1u) {
        w += subgroupShuffleXor(w, s);
    }
    return w;
}

fn seg_max_sg(lid: u32, lanes: u32, sgs: u32, v: f32) -> f32 {
    if (lanes == 1u) { return v; }
    let lane = lid % lanes;
    var w = v;
    if (lanes > sgs) {
        red[lid] = v;
        workgroupBarrier();
        for (var s = lanes >> 1u; s >= sgs; s >>= 1u) {
            if (lane < s) { red[lid] = max(red[lid], red[lid + s]); }
            workgroupBarrier();
        }
        w = red[lid - lane + lane % sgs];
        workgroupBarrier();
    }
    for (var s = min(lanes, sgs) >> 1u; s > 0u; s >>= 1u) {
        w = max(w, subgroupShuffleXor(w, s));
    }
    return w;
}

fn seg_sum2_sg(lid: u32, lanes: u32, sgs: u32, a: f32, b: f32) -> vec2<f32> {
    if (lanes == 1u) { return vec2<f32>(a, b); }
    let lane = lid % lanes;
    var w = vec2<f32>(a, b);
    if (lanes > sgs) {
        red[lid] = a;
        red2[lid] = b;
        workgroupBarrier();
        for (var s = lanes >> 1u; s >= sgs; s >>= 1u) {
            if (lane < s) {
                red[lid] += red[lid + s];
                red2[lid] += red2[lid + s];
            }
            workgroupBarrier();
        }
        w = vec2<f32>(red[lid - lane + lane % sgs], red2[lid - lane + lane % sgs]);
        workgroupBarrier();
    }
    for (var s = min(lanes, sgs) >> 1u; s > 0u; s >>= 1u) {
        w += subgroupShuffleXor(w, s);
    }
    return w;
}
";

/// Where a row kernel's file takes [`SEG_SG`] in its `_sg` variant.
const SEG_SG_MARK: &str =
    "// SEG_SG: the `_sg` variants (src/gpu/registry.rs) put their subgroup reductions here.";

/// Every entry point of a row kernel's `_sg` variant gets the subgroup size.
const SG_ENTRY: (&str, &str) = (
    "@builtin(local_invocation_index) lid: u32) {",
    "@builtin(local_invocation_index) lid: u32,\n    @builtin(subgroup_size) sgs: u32) {",
);

/// The exchange of `attention_pairs_wg`: a token's invocations swap their partial sums through
/// workgroup memory instead of subgroup shuffles, so the pair kernels run where there are no
/// subgroups (the browser, OpenGL) and no invocation holds a whole head (one that does spills:
/// bench/shader_stats.sh). Each call writes its value into one of two slots of the workgroup's
/// values and reads its partner's after a barrier; the slots alternate, so a slot is written
/// again only after the next call's barrier, which every invocation reaches after its read of
/// that slot: one barrier per exchange. Same sums as the shuffles, so the same bits. The slots
/// hold a workgroup of up to 256 invocations (quads of 64 tokens) for vec2s, 128 (pairs) for
/// vec4s.
const PAIRS_WG: (&str, &str) = (
    "fn swap2(lid: u32, mask: u32, v: vec2<f32>) -> vec2<f32> { return subgroupShuffleXor(v, mask); }
fn swap4(lid: u32, mask: u32, v: vec4<f32>) -> vec4<f32> { return subgroupShuffleXor(v, mask); }",
    "var<workgroup> swap_x2: array<vec2<f32>, 512>;
var<workgroup> swap_x4: array<vec4<f32>, 256>;
var<private> swap_slot: u32 = 0u;

fn swap2(lid: u32, mask: u32, v: vec2<f32>) -> vec2<f32> {
    let at = swap_slot * WG;
    swap_x2[at + lid] = v;
    workgroupBarrier();
    swap_slot ^= 1u;
    return swap_x2[at + (lid ^ mask)];
}

fn swap4(lid: u32, mask: u32, v: vec4<f32>) -> vec4<f32> {
    let at = swap_slot * WG;
    swap_x4[at + lid] = v;
    workgroupBarrier();
    swap_slot ^= 1u;
    return swap_x4[at + (lid ^ mask)];
}",
);

/// The cooperative-matrix matmul's wide tile: four subgroups down, two across, each with four
/// accumulators across (shaders/matmul_coop.wgsl, Layout).
const COOP_WIDE: (&str, &str) = (
    "const SGM: u32 = 2u;\nconst SGN: u32 = 4u;\nconst FN: u32 = 2u;",
    "const SGM: u32 = 4u;\nconst SGN: u32 = 2u;\nconst FN: u32 = 4u;",
);

/// (name, source shader, text replacements).
type Derived = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Shaders made from another by replacing text: (name, source shader, replacements). The
/// cooperative-matrix matmul is written for 16×16 matrices; its 8×8 variant differs only in the
/// matrix side and types, its wide tile ([`COOP_WIDE`]) in three constants.
/// The direct matmuls' `_sg` variants read the rows of A shared by a workgroup in lane 0 of each
/// subgroup and broadcast them (adapters with subgroups); `attention_sg`'s forward does the same
/// for the keys and values every invocation of a workgroup reads alike (CPU drivers). The row
/// kernels' `_sg` variants (softmax, layer norm) reduce through subgroup shuffles ([`SEG_SG`]);
/// `attention_pairs` adds the two-invocations-per-token kernels, whose halves meet through a
/// shuffle; `attention_pairs_wg` the same kernels meeting through workgroup memory
/// ([`PAIRS_WG`]).
const DERIVED: &[Derived] = &[
    (
        "softmax_sg",
        "softmax",
        &[
            SG_ENTRY,
            ("seg_sum(lid, lanes,", "seg_sum_sg(lid, lanes, sgs,"),
            ("seg_max(lid, lanes,", "seg_max_sg(lid, lanes, sgs,"),
            (SEG_SG_MARK, SEG_SG),
        ],
    ),
    (
        "layernorm_sg",
        "layernorm",
        &[
            SG_ENTRY,
            ("seg_sum(lid, lanes,", "seg_sum_sg(lid, lanes, sgs,"),
            ("seg_sum2(lid, lanes,", "seg_sum2_sg(lid, lanes, sgs,"),
            (SEG_SG_MARK, SEG_SG),
        ],
    ),
    (
        "matmul_coop8",
        "matmul_coop",
        &[
            ("const MS: u32 = 16u;", "const MS: u32 = 8u;"),
            ("coop_mat16x16<", "coop_mat8x8<"),
        ],
    ),
    (
        "matmul_coop_wide",
        "matmul_coop",
        &[COOP_WIDE],
    ),
    (
        "attention_coop8",
        "attention_coop",
        &[
            ("const MS: u32 = 16u;", "const MS: u32 = 8u;"),
            ("coop_mat16x16<", "coop_mat8x8<"),
        ],
    ),

    (
        "matmul_coop8_wide",
        "matmul_coop",
        &[
            ("const MS: u32 = 16u;", "const MS: u32 = 8u;"),
            ("coop_mat16x16<", "coop_mat8x8<"),
            COOP_WIDE,
        ],
    ),
    (
        "matmul_v4_sg",
        "matmul_v4",
        &[
            (
                "fn matmul_direct(@builtin(workgroup_id) wid: vec3<u32>, \
                 @builtin(local_invocation_index) lid: u32) {",
                "fn matmul_direct(@builtin(workgroup_id) wid: vec3<u32>, \
                 @builtin(local_invocation_index) lid: u32, \
                 @builtin(subgroup_invocation_id) lane: u32) {",
            ),
            ("    let leader = true;", "    let leader = lane == 0u;"),
            (
                "fn share(b: Block) -> Block { return b; }",
                "fn share(b: Block) -> Block {\n    return Block(subgroupBroadcast(b.v0, 0u), \
                 subgroupBroadcast(b.v1, 0u), subgroupBroadcast(b.v2, 0u), \
                 subgroupBroadcast(b.v3, 0u));\n}",
            ),
        ],
    ),
    (
        "matmul_sg",
        "matmul",
        &[
            (
                "fn matmul_general_direct(@builtin(workgroup_id) wid: vec3<u32>, \
                 @builtin(local_invocation_index) lid: u32) {",
                "fn matmul_general_direct(@builtin(workgroup_id) wid: vec3<u32>, \
                 @builtin(local_invocation_index) lid: u32, \
                 @builtin(subgroup_invocation_id) lane: u32) {",
            ),
            ("    let leader = true;", "    let leader = lane == 0u;"),
            (
                "fn share4(v: vec4<f32>) -> vec4<f32> { return v; }",
                "fn share4(v: vec4<f32>) -> vec4<f32> { return subgroupBroadcast(v, 0u); }",
            ),
        ],
    ),
    (
        "attention_pairs",
        "attention",
        &[(
            "// PAIRS: the derived shader attention_pairs (src/gpu/registry.rs) puts attention_pairs.wgsl here.",
            include_str!("../../shaders/attention_pairs.wgsl"),
        )],
    ),
    (
        "attention_pairs_wg",
        "attention",
        &[
            (
                "// PAIRS: the derived shader attention_pairs (src/gpu/registry.rs) puts attention_pairs.wgsl here.",
                include_str!("../../shaders/attention_pairs.wgsl"),
            ),
            PAIRS_WG,
        ],
    ),
    (
        "attention_sg",
        "attention",
        &[
            (
                "fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, \
                 @builtin(num_workgroups) nwg: vec3<u32>,\n                     \
                 @builtin(local_invocation_index) lid: u32) {",
                "fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, \
                 @builtin(num_workgroups) nwg: vec3<u32>, \
                 @builtin(local_invocation_index) lid: u32, \
                 @builtin(subgroup_invocation_id) lane: u32) {",
            ),
            ("    let leader = true;", "    let leader = lane == 0u;"),
            (
                "fn share4(v: vec4<f32>) -> vec4<f32> { return v; }",
                "fn share4(v: vec4<f32>) -> vec4<f32> { return subgroupBroadcast(v, 0u); }",
            ),
        ],
    ),
];

/// The shader files whose every array index is in range by construction, so they are compiled
/// without the index clamps WGSL asks for (native only). In the vec4 matmuls' inner loop a
/// clamp sat on each of the 4 workgroup-memory reads that feed 64 multiply-adds, and it keeps a
/// compiler from folding the read's constant offset into the load (bench/shader_stats.sh). Their
/// workgroup indices are bounded by the tile constants; their buffer reads and writes are each
/// guarded by the product's sizes, which the launcher checks against the buffers'.
#[cfg(not(target_arch = "wasm32"))]
const PROVEN_INDEXES: &[&str] = &["matmul_v4", "attention_tiled"];

/// Whether a shader (or a shader derived from its file) may be compiled without index clamps.
#[cfg(not(target_arch = "wasm32"))]
pub fn indexes_proven(name: &str) -> bool {
    PROVEN_INDEXES.contains(&shader_file(name))
}

/// The file a shader (or derived shader) comes from, without building its text (every dispatch
/// asks, through [`half_bindings`] and [`out_bindings`]).
fn shader_file(name: &str) -> &str {
    if let Some((_, base)) = UNROLLED.iter().find(|(n, _)| *n == name) {
        return shader_file(base);
    }
    DERIVED
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or(name, |(_, base, _)| base)
}

/// Shaders whose loops over a head's vec4s are written out ([`unroll`]): (name, the shader they
/// are made from). The attention kernels hold a token's q, k, v or their gradients as arrays
/// indexed by those loops' counters; a compiler that does not unroll a loop keeps the array in
/// memory instead of registers, as NVIDIA's did with the 128×128 matmul tile's accumulator
/// array (a 7–13× slowdown on an H200, BENCHMARKS.md). Written out, every index is a constant.
/// The sums are the same, in the same order.
const UNROLLED: &[(&str, &str)] = &[
    ("attention_u", "attention"),
    ("attention_pairs_u", "attention_pairs"),
    ("attention_pairs_wg_u", "attention_pairs_wg"),
];

/// The head loops [`UNROLLED`] writes out: (counter, bound, the bound's largest value). `HD4`
/// is at most `D4_MAX` = 16 vec4s (a head of 64); `H2`, half of it, at most 8.
const HEAD_LOOPS: &[Loop] = &[("c4", "HD4", 16), ("t", "H2", 8)];

/// A loop [`unroll`] writes out: (counter, bound, the bound's largest value).
type Loop = (&'static str, &'static str, u32);

/// Loops every shader made from a file has written out ([`unroll`]): (file, loops as in
/// [`HEAD_LOOPS`]). The 128-row vec4 matmul tiles' K-slice loop (counter `ks`): AMD's compiler
/// unrolls it whole, Mesa's NVIDIA compiler leaves it rolled, paying a counter, a compare and a
/// branch per step and keeping each workgroup-memory read's offset out of the load; written out,
/// its estimated issue cycles per K-slice drop by a quarter (bench/shader_stats.sh, NAK: 1,552
/// → 1,186 for `matmul_128`). The 64×64 tile's loop (`kk`) stays as written: NAK unrolls that
/// one itself, better than from the written-out text. The same operations run in the same
/// order.
const FILE_LOOPS: &[(&str, &[Loop])] = &[
    ("matmul_v4", &[("ks", "BK", 16)]),
    (
        "attention_tiled",
        &[("c", "HEAD_DIM", 64), ("jj", "BK", 64), ("ib", "BB", 32)],
    ),
];

/// `src` with every `for (var V = 0u; V < BOUND; V++) { BODY }` replaced by `max` copies of
/// BODY, copy i in a block that binds `let V = iu;` and, past the first, runs only if
/// `iu < BOUND` (an override, so each copy is kept or dropped when the pipeline is made). A
/// BODY that breaks or continues the loop would change meaning, so none is accepted (`None`),
/// nor one whose braces do not close.
fn unroll(src: &str, var: &str, bound: &str, max: u32) -> Option<String> {
    let head = format!("for (var {var} = 0u; {var} < {bound}; {var}++) {{");
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find(&head) {
        out.push_str(&rest[..at]);
        let body_at = at + head.len();
        let len = block_len(&rest[body_at..])?;
        let body = &rest[body_at..body_at + len];
        if body.contains("break") || body.contains("continue") {
            return None;
        }
        out.push_str(&format!("{{ let {var} = 0u;{body}}}"));
        for i in 1..max {
            out.push_str(&format!(
                " if ({i}u < {bound}) {{ let {var} = {i}u;{body}}}"
            ));
        }
        rest = &rest[body_at + len + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The length of a block's text up to its closing brace (`text` starts right after the
/// opening one), skipping `//` comments; `None` if it does not close.
fn block_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The file a shader (or derived shader) comes from, and its text as the kernel sees it; `None`
/// also where an edit of a derived shader no longer finds its text in the base.
fn shader_text(name: &str) -> Option<(&'static str, String)> {
    let (file, mut text) = shader_text_as_written(name)?;
    if let Some((_, loops)) = FILE_LOOPS.iter().find(|(f, _)| *f == file) {
        for &(var, bound, max) in loops.iter() {
            text = unroll(&text, var, bound, max)?;
        }
    }
    Some((file, text))
}

/// [`shader_text`] before [`FILE_LOOPS`] are written out.
fn shader_text_as_written(name: &str) -> Option<(&'static str, String)> {
    if let Some((_, base)) = UNROLLED.iter().find(|(n, _)| *n == name) {
        let (file, mut text) = shader_text(base)?;
        for &(var, bound, max) in HEAD_LOOPS {
            text = unroll(&text, var, bound, max)?;
        }
        return Some((file, text));
    }
    if let Some((_, base, edits)) = DERIVED.iter().find(|(n, _, _)| *n == name) {
        let (_, src) = SHADERS.iter().find(|(n, _)| n == base)?;
        let mut text = src.to_string();
        for (from, to) in edits.iter() {
            if !text.contains(from) {
                return None;
            }
            text = text.replace(from, to);
        }
        return Some((base, text));
    }
    let (n, src) = SHADERS.iter().find(|(n, _)| *n == name)?;
    Some((n, src.to_string()))
}

/// The element types of one compiled variant of a shader: `S` for operands and parameters, `O`
/// for the outputs of shaders that declare them apart (the matmuls: f16 operands may write f32
/// products); elsewhere only `S` matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Types {
    /// The storage type `S`.
    pub s: DType,
    /// The output type `O`.
    pub o: DType,
}

impl Types {
    /// `S` and `O` both `dtype`.
    pub fn of(dtype: DType) -> Types {
        Types { s: dtype, o: dtype }
    }
}

/// WGSL's name for an element type.
fn wgsl_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
    }
}

/// The full source of a shader whose storage element type `S` (and output type `O`) is `dtype`.
/// Shaders declare their activation and parameter bindings as `array<S>` and convert on every
/// load (`f32(x[i])`) and store (`S(v)`), so the f16 variant stores halves and still computes in
/// f32; the f32 variant's conversions are identities. A shader's own `enable` directives move to
/// the top, where WGSL wants them.
pub fn shader_source_as(name: &str, dtype: DType) -> Option<String> {
    shader_source_typed(name, Types::of(dtype))
}

/// [`shader_source_as`] with `S` and `O` chosen apart.
pub fn shader_source_typed(name: &str, types: Types) -> Option<String> {
    let (_, src) = shader_text(name)?;
    let mut enables: Vec<&str> = if types.s == DType::F16 || types.o == DType::F16 {
        vec!["enable f16;"]
    } else {
        vec![]
    };
    let mut body = String::with_capacity(src.len());
    for line in src.lines() {
        if line.starts_with("enable ") {
            if !enables.contains(&line.trim()) {
                enables.push(line.trim());
            }
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    Some(format!(
        "{}\nalias S = {};\nalias O = {};\n{PRELUDE}\n{body}",
        enables.join("\n"),
        wgsl_type(types.s),
        wgsl_type(types.o)
    ))
}

/// The storage bindings of a shader file declared with element type `ty` (`array<ty>` or
/// `array<vec4<ty>>`), per file.
fn typed_bindings(ty: &str) -> Vec<(&'static str, Vec<u32>)> {
    let plain = format!("array<{ty}>");
    let vec4 = format!("array<vec4<{ty}>>");
    SHADERS
        .iter()
        .map(|(name, src)| {
            let bindings = src
                .lines()
                .filter(|l| l.contains("var<storage") && (l.contains(&plain) || l.contains(&vec4)))
                .filter_map(|l| {
                    let at = l.find("@binding(")? + "@binding(".len();
                    l[at..].split(')').next()?.trim().parse().ok()
                })
                .collect();
            (*name, bindings)
        })
        .collect()
}

/// The bindings of `name` (a shader or derived shader) in `table`.
fn bindings_in(table: &'static [(&'static str, Vec<u32>)], name: &str) -> &'static [u32] {
    let file = shader_file(name);
    table
        .iter()
        .find(|(n, _)| *n == file)
        .map_or(&[], |(_, b)| b.as_slice())
}

/// Storage bindings a shader declares with the element type `S` (`array<S>` or
/// `array<vec4<S>>`): these take tensors of the kernel's precision, every other float binding
/// takes f32 (or `O`, see [`out_bindings`]).
pub fn half_bindings(name: &str) -> &'static [u32] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, Vec<u32>)>> = std::sync::OnceLock::new();
    bindings_in(TABLE.get_or_init(|| typed_bindings("S")), name)
}

/// Storage bindings a shader declares with the output type `O`: the products of the matmuls,
/// f32 or f16 whatever their operands are.
pub fn out_bindings(name: &str) -> &'static [u32] {
    static TABLE: std::sync::OnceLock<Vec<(&'static str, Vec<u32>)>> = std::sync::OnceLock::new();
    bindings_in(TABLE.get_or_init(|| typed_bindings("O")), name)
}

pub use super::tensor::DType;

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// One entry point: binding 0 is always the uniform params struct; `bindings` lists the storage
/// bindings the entry point uses, as (binding number, access), in the order launchers pass them.
#[derive(Debug)]
pub struct Kernel {
    /// Shader name in [`SHADERS`].
    pub shader: &'static str,
    /// WGSL entry point.
    pub entry: &'static str,
    /// Storage bindings used by this entry point.
    pub bindings: &'static [(u32, Access)],
    /// Size in bytes of the Rust params struct (checked against WGSL by a test).
    pub params_size: usize,
}

impl Kernel {
    /// Descriptor for an entry point whose params struct is `P`.
    pub const fn new<P>(
        shader: &'static str,
        entry: &'static str,
        bindings: &'static [(u32, Access)],
    ) -> Self {
        Kernel {
            shader,
            entry,
            bindings,
            params_size: std::mem::size_of::<P>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unroll_writes_out_each_loop_and_refuses_what_it_cannot() {
        let src = "a; for (var c4 = 0u; c4 < HD4; c4++) { if (x) { y[c4] = 1.0; } // }\n } b;";
        let out = unroll(src, "c4", "HD4", 3).expect("unrolls");
        assert_eq!(
            out,
            "a; { let c4 = 0u; if (x) { y[c4] = 1.0; } // }\n }\
             \x20if (1u < HD4) { let c4 = 1u; if (x) { y[c4] = 1.0; } // }\n }\
             \x20if (2u < HD4) { let c4 = 2u; if (x) { y[c4] = 1.0; } // }\n } b;"
        );
        assert!(unroll("for (var t = 0u; t < H2; t++) { break; }", "t", "H2", 8).is_none());
        assert!(unroll("for (var t = 0u; t < H2; t++) { x();", "t", "H2", 8).is_none());
        for (name, base) in UNROLLED {
            let text = shader_text(name).expect("every head loop closes").1;
            assert!(!text.contains("c4 < HD4; c4++") && !text.contains("t < H2; t++"));
            assert_eq!(shader_file(name), shader_file(base));
        }
        // The 128-row matmul tiles' K loops are written out, the 64×64 tile's is not.
        let v4 = shader_text("matmul_v4").expect("registered").1;
        assert!(!v4.contains("ks < BK; ks++") && v4.contains("kk < BK; kk++"));
        assert_eq!(v4.matches("let ks = 15u;").count(), 2);
    }
}
