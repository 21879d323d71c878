// Browser test of the web app: serves web/dist, drives Debian's headless Chromium with WebGPU on
// its software adapter, and checks (1) the page starts and names its adapter, (2) the tiny golden
// model matches PyTorch on WebGPU, (2b) every kernel pipeline builds and attention matches the
// CPU twin in the GPUs' layout, (3) training with the link's settings runs 20+ steps with a
// finite, falling loss, live attention maps and k-NN and probe accuracies, (4) the screenshot's curve and attention panels
// are not blank, (5) a browser without WebGPU gets a message instead of a blank page. Prints
// "N passed, N failed"; exits non-zero on any failure.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../dist");
const out = process.env.OUT_DIR || path.resolve(here, "out");
const steps = Number(process.env.STEPS || 20);
// Training settings in the page's link: small enough for a software adapter on two cores.
const trainQuery = process.env.TRAIN_QUERY || "batch=8&depth=2&maps=4&eval=10";
// Every wait below ends when what it waits for happens, or when the page reports a failure.
// Two limits end what would otherwise never end, far past what a slow machine needs: a wait
// whose page has shown no movement for WAIT_S, and the whole test once nothing at all has moved
// for HANG_S (a page that stops answering, whose calls never return): every check, every change
// a wait sees and every line the page logs count as movement.
const patience = Number(process.env.WAIT_S || 900) * 1000;
const budget = Number(process.env.HANG_S || 3600) * 1000;
// A safetensors file's header: its tensors by name (and `__metadata__`).
const header = (buf) => {
  const n = Number(buf.readBigUInt64LE(0));
  return JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
};
// CRC-32 (ZIP's): node's zlib.crc32 where it has one (20.15 and later), else bit by bit.
const crc32 = (buf) => {
  if (typeof zlib.crc32 === "function") return zlib.crc32(buf);
  let crc = 0xffffffff;
  for (const byte of buf) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
};
const flags = [
  "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader",
  "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--disable-quic", "--window-size=1280,800",
];
mkdirSync(out, { recursive: true });

let passed = 0, failed = 0;
function check(name, ok, detail = "") {
  moved();
  if (ok) { passed++; console.log(`ok   ${name} ${detail}`); }
  else { failed++; console.log(`FAIL ${name} ${detail}`); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The app's status (JSON from the page), read every `every` ms until `done` holds for it, then
// returned. `progress` names what counts as movement: while it changes (a training step, say),
// the wait goes on; only `patience` without a change gives up, returning the last status.
async function until(page, done, { every = 200, progress = () => 0 } = {}) {
  let last, since = Date.now();
  for (;;) {
    const st = JSON.parse(await page.evaluate(() => window.dinoscope?.status() || "{}"));
    if (done(st)) return st;
    if (broken) {
      console.log(`stopped waiting: ${broken}`);
      return st;
    }
    const p = JSON.stringify(progress(st));
    if (p !== last) { last = p; since = Date.now(); moved(); }
    if (Date.now() - since > patience) {
      console.log(`gave up waiting: nothing moved for ${patience / 1000} s`);
      return st;
    }
    await sleep(every);
  }
}

// A PNG decoder for 8-bit RGB/RGBA screenshots (no dependencies).
function decodePng(buf) {
  let pos = 8, width = 0, height = 0, channels = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), type = buf.toString("ascii", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === "IHDR") {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      channels = { 2: 3, 6: 4 }[data[9]];
      if (data[8] !== 8 || !channels) throw new Error("unsupported PNG format");
    } else if (type === "IDAT") idat.push(data);
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels, px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      let v = row[x];
      if (f === 1) v += a; else if (f === 2) v += b; else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[y * stride + x] = v & 255;
    }
  }
  return { width, height, channels, px };
}

function busyness(img, [x0, y0, x1, y1]) {
  const counts = new Map();
  let total = 0;
  for (let y = Math.max(0, Math.floor(y0)); y < Math.min(img.height, y1); y++) {
    for (let x = Math.max(0, Math.floor(x0)); x < Math.min(img.width, x1); x++) {
      const i = (y * img.width + x) * img.channels;
      const key = (img.px[i] << 16) | (img.px[i + 1] << 8) | img.px[i + 2];
      counts.set(key, (counts.get(key) || 0) + 1);
      total++;
    }
  }
  const most = Math.max(0, ...counts.values());
  return { colours: counts.size, busy: 1 - most / Math.max(1, total) };
}

const port = 8100 + Math.floor(Math.random() * 800);
const server = spawn("python3", ["-m", "http.server", "--bind", "127.0.0.1", String(port)],
  { cwd: dist, stdio: "ignore" });
const url = `http://127.0.0.1:${port}/`;
let browser;
// The page's console, printed after a failure (empty if the browser never started).
const logs = [];
// Set when the page crashes or throws: the waits end at once (`until` returns, and a wait
// wrapped in `orBroken` fails).
let broken = "";
let onBroken;
const brokenSignal = new Promise((_, reject) => { onBroken = reject; });
brokenSignal.catch(() => {});
const setBroken = (why) => { if (!broken) { broken = why; onBroken(new Error(`the page failed: ${why}`)); } };
// (Handled here too, so that one left behind by a failed Promise.all never goes unhandled.)
const orBroken = (p) => { const r = Promise.race([p, brokenSignal]); r.catch(() => {}); return r; };
const watchdog = setTimeout(() => {
  console.log(`FAIL the browser test: nothing moved for ${budget / 1000} s`);
  console.log(logs.slice(-40).join("\n"));
  server.kill();
  process.exit(1);
}, budget);
watchdog.unref();
// Movement: the watchdog starts over.
function moved() { watchdog.refresh(); }
try {
  for (;;) {
    if (server.exitCode !== null) throw new Error(`python3 -m http.server ended (${server.exitCode})`);
    try { if ((await fetch(url)).ok) break; } catch { /* not up yet */ }
    await sleep(200);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: false, args: flags,
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("console", (m) => { logs.push(`${m.type()}: ${m.text()}`); moved(); });
  page.on("pageerror", (e) => { logs.push(`pageerror: ${e}`); setBroken(`${e}`); });
  page.on("crash", () => { logs.push("the page crashed"); setBroken("the page crashed"); });
  const t0 = Date.now();
  // The golden check first, with training off so it has the adapter to itself; the training
  // settings come with the link and apply when training starts after the checks, on the same
  // device (so it reuses the pipelines the checks built: a software adapter takes seconds each).
  await page.goto(url + "?train=0&" + trainQuery);
  await orBroken(page.waitForFunction(
    () => window.dinoscope || document.getElementById("message")?.className === "shown",
    null, { timeout: patience }));
  const message = await page.evaluate(() => document.getElementById("message")?.textContent || "");
  check("page starts on WebGPU", message === "", message);
  // The first frame publishes the status (the backend is always named; browsers withhold the
  // adapter's name, which the app then names itself).
  let status = message ? {} : await until(page, (st) => st.backend, { every: 100 });
  check("the app draws its first frame", Boolean(status.backend), JSON.stringify(status.adapter));
  const firstPaint = Date.now() - t0;
  console.log(`adapter: ${status.adapter} (${status.backend}); app running after ${firstPaint} ms`);
  writeFileSync(path.join(out, "first_paint_ms.txt"), String(firstPaint));

  // The kernels a browser on a real GPU takes: this software adapter runs the CPU drivers'
  // layouts, so every pipeline the browser may build is built here (WebGPU's compiler checks
  // more than wgpu's), and attention runs in the GPUs' layout against the CPU twin. First, while
  // the app's device has built none of them (the check fails on a pipeline built before it).
  const layouts = JSON.parse(await page.evaluate(() => window.dinoscope.check_layouts()));
  for (const c of layouts) check(`${c.name} on WebGPU`, c.pass, c.row);
  check("the GPU-layout checks ran", layouts.length === 2, JSON.stringify(layouts.map((c) => c.name)));

  // The tiny golden models (DINOv2, and DINOv3 with its rotary positions) on this adapter.
  for (const model of ["tiny_dinov2", "tiny_dinov3"]) {
    const fixture = JSON.parse(await page.evaluate(async (m) => {
      const get = async (p) => new Uint8Array(await (await fetch(p)).arrayBuffer());
      const text = async (p) => (await fetch(p)).text();
      return window.dinoscope.check_fixture(m, await text(`fixtures/${m}/config.json`),
        await get(`fixtures/${m}/model.safetensors`), await get(`fixtures/${m}/io.safetensors`),
        await text("fixtures/manifest.json"));
    }, model));
    // One comparison for each output in the fixture's io file (its inputs and the official
    // code's offset table, which the gradient runs check, aside), each name once, as natively.
    const io = header(readFileSync(path.join(dist, `fixtures/${model}/io.safetensors`)));
    const outputs = Object.keys(io).filter((n) => n !== "__metadata__" && !n.startsWith("input") &&
      !n.includes("_official_")).length;
    check(`${model} outputs match the golden tensors on WebGPU`,
      fixture.pass && fixture.compared === outputs && outputs > 0,
      fixture.row + ` (${fixture.compared} tensors compared, ${outputs} outputs in the file)`);
  }

  // Inspect: drop the fixture model and a photo on the canvas, as a visitor would.
  const drop = async (file, name) => {
    const dt = await page.evaluateHandle(async ([f, n]) => {
      const d = new DataTransfer();
      d.items.add(new File([await (await fetch(f)).blob()], n));
      return d;
    }, [file, name]);
    await page.dispatchEvent("canvas", "dragover", { dataTransfer: dt });
    await page.dispatchEvent("canvas", "drop", { dataTransfer: dt });
  };
  await drop("fixtures/tiny_dinov2/model.safetensors", "model.safetensors");
  await drop("fixtures/chelsea.png", "chelsea.png");
  const inspected = (done) => until(page, (st) => done(st.inspect || {}), { every: 500 })
    .then((st) => st.inspect || {});
  let inspect = await inspected((i) => i.heads || i.error);
  check("inspect: dropped weights and photo give attention maps", inspect.heads > 0 && !inspect.error,
    JSON.stringify(inspect));
  await page.screenshot({ path: path.join(out, "browser_inspect.png") });

  // DINOv3 weights dropped on the same photo.
  await drop("fixtures/tiny_dinov3/model.safetensors", "dinov3.safetensors");
  inspect = await inspected((i) => i.error || (String(i.model || "").includes("dinov3") && i.heads));
  check("inspect: dropped DINOv3 weights give attention maps",
    String(inspect.model || "").includes("dinov3") && inspect.heads > 0 && !inspect.error, JSON.stringify(inspect));

  // Training in the page, with the link's settings, started as the Start button starts it.
  const asked = await page.evaluate(() => window.dinoscope.start_training());
  if (asked) status = await until(page, (st) => st.state !== "Idle" || (st.errors || []).length);
  check("training starts", asked && status.state !== "Idle", `${status.state} ${JSON.stringify(status.errors)}`);
  const tTrain = Date.now();
  let told = 0;
  status = await until(page, (st) => {
    const secs = (Date.now() - tTrain) / 1000;
    if (secs >= told + 30) {
      told = secs;
      console.log(`  … step ${st.step}, ${st.snapshots} snapshots, ${secs.toFixed(0)} s`);
    }
    return ((st.step || 0) >= steps && (st.last_snapshot_step || 0) >= steps - 5 &&
      (st.knn || []).some(([s]) => s >= 10)) ||
      st.state === "Ended" || st.state === "Failed" || st.state === "Idle";
  }, { every: 2000, progress: (st) => [st.step, st.snapshots, (st.knn || []).length] });
  const secs = (Date.now() - tTrain) / 1000;
  const losses = status.losses || [];
  console.log(`trained ${status.step} steps in ${secs.toFixed(0)} s; snapshots ${status.snapshots}`);
  writeFileSync(path.join(out, "status.json"), JSON.stringify(status, null, 1));
  check(`${steps}+ training steps in the browser`, (status.step || 0) >= steps, `step ${status.step}`);
  check("no errors in the app", (status.errors || []).length === 0, JSON.stringify(status.errors));
  check("every loss is finite", losses.length >= steps && losses.every(Number.isFinite));
  const mean = (a) => a.reduce((s, v) => s + v, 0) / Math.max(1, a.length);
  const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-5));
  check("the loss falls", last < first, `first 5 steps ${first.toFixed(3)} → last 5 ${last.toFixed(3)}`);
  check("attention maps were re-rendered while training", (status.snapshots || 0) >= 3,
    `${status.snapshots} snapshots`);
  // k-NN and the linear probe on the bundled held-out images: the random features' baseline,
  // then after step 10, each an accuracy of 10 classes well above chance.
  const knn = status.knn || [], probe = status.probe || [];
  const fine = (evals) => evals.some(([s]) => s === 0) && evals.some(([s]) => s >= 10) &&
    evals.every(([, a]) => a > 0.2 && a <= 1);
  check("k-NN and linear probe measured in the browser", fine(knn) && fine(probe),
    `k-NN ${JSON.stringify(knn)}, probe ${JSON.stringify(probe)}`);

  // The run's files as downloads, as its Download buttons give them: safetensors whose header
  // holds the step, the training config and the teacher's tensors.
  for (const [what, name, holds] of [
    ["download weights", "teacher_backbone.safetensors", "blocks.0.attn.qkv.weight"],
    ["download state", "state.safetensors", "teacher"],
  ]) {
    let detail = "";
    try {
      const [dl] = await Promise.all([
        orBroken(page.waitForEvent("download", { timeout: patience })),
        page.evaluate((w) => window.dinoscope.control(w), what),
      ]);
      const file = path.join(out, dl.suggestedFilename());
      await dl.saveAs(file);
      const h = header(readFileSync(file));
      const step = Number((h.__metadata__ || {}).step);
      detail = `${dl.suggestedFilename()}: step ${step}, ${Object.keys(h).length - 1} tensors`;
      // A state carries the run's log: a line for each of its steps (and the evaluations').
      const logged = (h.__metadata__.metrics_log || "").split("\n")
        .filter((l) => l.startsWith("{") && JSON.parse(l).step !== undefined).length;
      if (what === "download state") detail += `, ${logged} steps logged`;
      const ok = dl.suggestedFilename() === name && step >= steps && holds in h &&
        (what !== "download state" ||
          ((h.__metadata__.train_config || "").includes("global_size") && logged === step));
      check(`${what}: a safetensors file of the run`, ok, detail);
    } catch (e) {
      check(`${what}: a safetensors file of the run`, false, `${detail} ${e}`);
    }
  }

  // "Download for transformers": a ZIP of stored files, export-hf/ with transformers' three
  // files; each entry's local header agrees with the central directory, and its CRC with its
  // bytes.
  const unzipStored = (zip) => {
    const end = zip.length - 22;
    if (zip.readUInt32LE(end) !== 0x06054b50) throw new Error("no end of central directory");
    const files = {};
    let at = zip.readUInt32LE(end + 16);
    for (let i = 0; i < zip.readUInt16LE(end + 10); i++) {
      if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`entry ${i}: bad signature`);
      const [method, crc, size] = [zip.readUInt16LE(at + 10), zip.readUInt32LE(at + 16), zip.readUInt32LE(at + 24)];
      const [n, extra, comment] = [zip.readUInt16LE(at + 28), zip.readUInt16LE(at + 30), zip.readUInt16LE(at + 32)];
      const name = zip.subarray(at + 46, at + 46 + n).toString("utf8");
      const local = zip.readUInt32LE(at + 42);
      if (zip.readUInt32LE(local) !== 0x04034b50 || method !== 0 ||
          !zip.subarray(local + 4, local + 26).equals(zip.subarray(at + 6, at + 28))) {
        throw new Error(`${name}: local header`);
      }
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + size);
      if (crc32(data) !== crc) throw new Error(`${name}: CRC`);
      files[name] = data;
      at += 46 + n + extra + comment;
    }
    return files;
  };
  {
    let detail = "";
    try {
      const [dl] = await Promise.all([
        orBroken(page.waitForEvent("download", { timeout: patience })),
        page.evaluate(() => window.dinoscope.control("download hf")),
      ]);
      const file = path.join(out, dl.suggestedFilename());
      await dl.saveAs(file);
      const files = unzipStored(readFileSync(file));
      detail = `${dl.suggestedFilename()}: ${Object.keys(files).join(", ")}`;
      const config = JSON.parse(files["export-hf/config.json"].toString("utf8"));
      const pre = JSON.parse(files["export-hf/preprocessor_config.json"].toString("utf8"));
      const h = header(files["export-hf/model.safetensors"]);
      const n = Object.keys(h).length - 1;
      detail += `; ${config.architectures} (${config.hidden_size} wide, ${config.num_hidden_layers} ` +
        `blocks), ${n} tensors, crops of ${pre.crop_size.height} px`;
      const ok = dl.suggestedFilename() === "export-hf.zip" && Object.keys(files).length === 3 &&
        config.model_type === "dinov2" && config.num_hidden_layers >= 1 &&
        "embeddings.patch_embeddings.projection.weight" in h &&
        "encoder.layer.0.attention.attention.query.weight" in h &&
        pre.crop_size.height === pre.size.shortest_edge && pre.crop_size.height % config.patch_size === 0;
      check("download hf: a transformers model folder in a ZIP archive", ok, detail);
    } catch (e) {
      check("download hf: a transformers model folder in a ZIP archive", false, `${detail} ${e}`);
    }
  }

  // The screenshot once three more frames have been drawn (the pointer's moves ask for them;
  // egui may lay a frame out twice), so that it shows the app as it is now.
  const frame = async () => JSON.parse(await page.evaluate(() => window.dinoscope.status())).frame || 0;
  const before = await frame();
  for (let i = 0; i < 3; i++) {
    await page.mouse.move(640 + 5 * i, 790);
    await orBroken(page.waitForFunction((f) => JSON.parse(window.dinoscope.status()).frame > f,
      before + i, { timeout: patience }));
  }
  const shotPath = path.join(out, "browser.png");
  const png = await page.screenshot({ path: shotPath });
  const img = decodePng(png);
  status = JSON.parse(await page.evaluate(() => window.dinoscope.status()));
  const ppp = status.pixels_per_point || 1;
  for (const [panel, minColours] of [["curves", 100], ["attention", 200]]) {
    const r = (status.panels || {})[panel];
    const b = r ? busyness(img, r.map((v) => v * ppp)) : { colours: 0, busy: 0 };
    check(`screenshot: ${panel} panel is drawn`, b.colours >= minColours && b.busy > 0.05,
      `${b.colours} colours, ${(100 * b.busy).toFixed(0)}% non-background`);
  }
  console.log(`screenshot: ${shotPath}`);

  // The downloaded checkpoint, dropped on the page after a stop, resumes the run at its step.
  try {
    const saved = readFileSync(path.join(out, "state.safetensors"));
    const savedStep = Number(header(saved).__metadata__.step);
    await page.evaluate(() => window.dinoscope.control("stop"));
    await until(page, (st) => st.state === "Ended");
    const dt = await page.evaluateHandle(([bytes, n]) => {
      const d = new DataTransfer();
      d.items.add(new File([new Uint8Array(bytes)], n));
      return d;
    }, [Array.from(saved), "state.safetensors"]);
    await page.dispatchEvent("canvas", "dragover", { dataTransfer: dt });
    await page.dispatchEvent("canvas", "drop", { dataTransfer: dt });
    status = await until(page, (st) => (st.state === "Running" &&
      (st.losses || []).length >= savedStep + 2) || (st.errors || []).length,
    { every: 1000, progress: (st) => [st.state, (st.losses || []).length] });
    // The resumed run's curve holds the steps before the checkpoint (from the log its state
    // file carries) and the ones after it, and its evaluations the ones before it.
    const losses = status.losses || [];
    const noted = (status.notices || []).some((n) => n.includes(`resuming at step ${savedStep}`));
    const earlierKnn = (status.knn || []).filter(([s]) => s <= savedStep);
    check("a dropped checkpoint resumes the run at its step, its curve whole",
      noted && losses.length >= savedStep + 2 && status.step === losses.length &&
        losses.every(Number.isFinite) && earlierKnn.some(([s]) => s === 0) &&
        earlierKnn.some(([s]) => s >= 10) && !(status.errors || []).length,
      `saved at ${savedStep}, now step ${status.step} with ${losses.length} points on the curve, ` +
        `k-NN ${JSON.stringify(earlierKnn)} ${JSON.stringify(status.errors)}`);
  } catch (e) {
    check("a dropped checkpoint resumes the run at its step", false, `${e}`);
  }

  // Without WebGPU: a message, not a blank page.
  const bare = await browser.newPage();
  await bare.addInitScript(() => { delete Navigator.prototype.gpu; });
  await bare.goto(url);
  await bare.waitForFunction(() => document.getElementById("message")?.className === "shown",
    null, { timeout: patience }).catch(() => {});
  const text = await bare.evaluate(() => document.getElementById("message")?.textContent || "");
  check("a browser without WebGPU gets a message", text.includes("WebGPU"), JSON.stringify(text.slice(0, 60)));
  if (failed) console.log(logs.slice(-40).join("\n"));
} catch (e) {
  failed++;
  console.log(`FAIL browser test crashed: ${e.stack || e}`);
  console.log(logs.slice(-40).join("\n"));
} finally {
  if (browser) await browser.close();
  server.kill();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
