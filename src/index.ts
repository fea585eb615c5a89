/**
 * steerkit: steer language models at inference time.
 * The core contract and generation; built-in plugins are in `steerkit/plugins`, backends in
 * `steerkit/adapters/llama-cpp` and `steerkit/adapters/onnx`, test helpers in `steerkit/testing`.
 */
export * from "./core/index.ts";
// The direction kind is used with the core's artifact store in most programs: exported at the root too.
export { directionArtifact, type Direction } from "./directions/artifact.ts";
