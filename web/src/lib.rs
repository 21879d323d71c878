//! The browser entry points of dinoscope: the app on a canvas, and hooks the browser test calls.

#![cfg(target_arch = "wasm32")]

use wasm_bindgen::prelude::*;

/// Starts the app on the page's canvas (called when the module loads).
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    let _ = console_log::init_with_level(log::Level::Warn);
    wasm_bindgen_futures::spawn_local(async {
        if let Err(e) = dinoscope::app::web::start_page("dinoscope-canvas").await {
            dinoscope::app::web::show_page_message(&e);
        }
    });
}

/// The app's state as JSON: run state, step, losses, snapshots, messages.
#[wasm_bindgen]
pub fn status() -> String {
    dinoscope::app::web::status_json()
}

/// Runs a golden model case (config.json, model.safetensors, io.safetensors and the manifest)
/// on this browser's WebGPU adapter; returns the result as JSON.
#[wasm_bindgen]
pub async fn check_fixture(
    name: String,
    config_json: String,
    model: Vec<u8>,
    io: Vec<u8>,
    manifest_json: String,
) -> String {
    dinoscope::app::web::check_fixture(&name, &config_json, &model, &io, &manifest_json).await
}

/// Runs the checks that need no blocking reads (every kernel pipeline the browser builds, and
/// attention in the GPUs' layout) on this browser's adapter; returns their results as JSON.
#[wasm_bindgen]
pub async fn check_layouts() -> String {
    dinoscope::app::web::check_layouts().await
}

/// Starts training with the app's settings (those of the page's link), as the Start button
/// does; false before the app has started.
#[wasm_bindgen]
pub fn start_training() -> bool {
    dinoscope::app::web::request_start()
}

/// Does what a run's button does (`pause`, `resume`, `stop`, `download weights`,
/// `download state`) at the app's next frame; false for anything else or before it has started.
#[wasm_bindgen]
pub fn control(what: String) -> bool {
    dinoscope::app::web::request_control(&what)
}
