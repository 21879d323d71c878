// A 128×128-tile fp32 matmul, 16×16 invocations with 8×8 outputs each, accumulators in 16 vec4
// registers indexed only by constants. C = A·B, A [M, K] and B [K, N] row-major; M and N multiples
// of 128, K of 8 (an experiment: see examples/matmul_probe.rs).
@group(0) @binding(0) var<uniform> dims: vec4<u32>;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = dims.y;
    let k = dims.z;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    var acc: array<vec4<f32>, 16>;
    let la_row = lid / 2u;
    let la_k = (lid % 2u) * 4u;
    let lb_k = lid / 32u;
    let lb_c4 = lid % 32u;
    for (var k0 = 0u; k0 < k; k0 += 8u) {
        let va = a[((row0 + la_row) * k + k0 + la_k) / 4u];
        As[(la_k + 0u) * 128u + la_row] = va.x;
        As[(la_k + 1u) * 128u + la_row] = va.y;
        As[(la_k + 2u) * 128u + la_row] = va.z;
        As[(la_k + 3u) * 128u + la_row] = va.w;
        Bs[lb_k * 32u + lb_c4] = b[((k0 + lb_k) * n + col0) / 4u + lb_c4];
        workgroupBarrier();
        for (var kk = 0u; kk < 8u; kk++) {
            let b0 = Bs[kk * 32u + tx];
            let b1 = Bs[kk * 32u + 16u + tx];
            let base = kk * 128u + ty * 8u;
            let a0 = vec4<f32>(As[base + 0u]);
            let a1 = vec4<f32>(As[base + 1u]);
            let a2 = vec4<f32>(As[base + 2u]);
            let a3 = vec4<f32>(As[base + 3u]);
            let a4 = vec4<f32>(As[base + 4u]);
            let a5 = vec4<f32>(As[base + 5u]);
            let a6 = vec4<f32>(As[base + 6u]);
            let a7 = vec4<f32>(As[base + 7u]);
            acc[0] = fma(a0, b0, acc[0]);
            acc[1] = fma(a0, b1, acc[1]);
            acc[2] = fma(a1, b0, acc[2]);
            acc[3] = fma(a1, b1, acc[3]);
            acc[4] = fma(a2, b0, acc[4]);
            acc[5] = fma(a2, b1, acc[5]);
            acc[6] = fma(a3, b0, acc[6]);
            acc[7] = fma(a3, b1, acc[7]);
            acc[8] = fma(a4, b0, acc[8]);
            acc[9] = fma(a4, b1, acc[9]);
            acc[10] = fma(a5, b0, acc[10]);
            acc[11] = fma(a5, b1, acc[11]);
            acc[12] = fma(a6, b0, acc[12]);
            acc[13] = fma(a6, b1, acc[13]);
            acc[14] = fma(a7, b0, acc[14]);
            acc[15] = fma(a7, b1, acc[15]);
        }
        workgroupBarrier();
    }
    c[((row0 + ty * 8u + 0u) * n + col0 + tx * 4u) / 4u] = acc[0];
    c[((row0 + ty * 8u + 0u) * n + col0 + 64u + tx * 4u) / 4u] = acc[1];
    c[((row0 + ty * 8u + 1u) * n + col0 + tx * 4u) / 4u] = acc[2];
    c[((row0 + ty * 8u + 1u) * n + col0 + 64u + tx * 4u) / 4u] = acc[3];
    c[((row0 + ty * 8u + 2u) * n + col0 + tx * 4u) / 4u] = acc[4];
    c[((row0 + ty * 8u + 2u) * n + col0 + 64u + tx * 4u) / 4u] = acc[5];
    c[((row0 + ty * 8u + 3u) * n + col0 + tx * 4u) / 4u] = acc[6];
    c[((row0 + ty * 8u + 3u) * n + col0 + 64u + tx * 4u) / 4u] = acc[7];
    c[((row0 + ty * 8u + 4u) * n + col0 + tx * 4u) / 4u] = acc[8];
    c[((row0 + ty * 8u + 4u) * n + col0 + 64u + tx * 4u) / 4u] = acc[9];
    c[((row0 + ty * 8u + 5u) * n + col0 + tx * 4u) / 4u] = acc[10];
    c[((row0 + ty * 8u + 5u) * n + col0 + 64u + tx * 4u) / 4u] = acc[11];
    c[((row0 + ty * 8u + 6u) * n + col0 + tx * 4u) / 4u] = acc[12];
    c[((row0 + ty * 8u + 6u) * n + col0 + 64u + tx * 4u) / 4u] = acc[13];
    c[((row0 + ty * 8u + 7u) * n + col0 + tx * 4u) / 4u] = acc[14];
    c[((row0 + ty * 8u + 7u) * n + col0 + 64u + tx * 4u) / 4u] = acc[15];
}
