/**
 * A small lossless codec for ONNX ModelProto (see wire.ts for why it is hand-written), with
 * builders for writing graphs from scratch and helpers for external data files.
 */
export * from "./types.ts";
export { decodeModel, OnnxDecodeError } from "./decode.ts";
export { encodeModel } from "./encode.ts";
export * from "./build.ts";
export * from "./external.ts";
export { checkFiniteInitializers, scanOnnxInitializers } from "./scan.ts";
