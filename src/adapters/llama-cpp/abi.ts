/**
 * The binary interface of the one libllama build Steerkit has verified: the prebuilt library of
 * `@node-llama-cpp/linux-x64@3.21.1` (llama.cpp release tag "v0.4.0" in its _nlcBuildMetadata.json).
 *
 * Every number here was derived by hand from that release's `include/llama.h` and
 * `ggml/include/ggml.h` (x86-64 SysV layout) and is checked at load time against the values
 * `llama_*_default_params()` return (see `verifyDefaults` in ffi.ts and test/llama-cpp/abi.test.ts).
 * A different build is refused rather than guessed at: a wrong offset here corrupts memory silently.
 */

export const VERIFIED_PACKAGE = "@node-llama-cpp/linux-x64";
export const VERIFIED_PACKAGE_VERSION = "3.21.1";
export const VERIFIED_LLAMA_RELEASE = "v0.4.0";
export const LIB_LLAMA = "libllama.v0.4.0.so";
export const LIB_GGML = "libggml.v0.4.0.so";
export const LIB_GGML_BASE = "libggml-base.so";

/** struct llama_model_params (80 bytes). */
export const MODEL_PARAMS = {
  size: 80,
  devices: 0,
  n_gpu_layers: 16, // int32
  split_mode: 20, // enum, default LLAMA_SPLIT_MODE_LAYER = 1
  load_mode: 24, // enum llama_load_mode: NONE = 0 reads weights into writable memory (training needs it)
  use_mmap_free_bools: 72, // vocab_only@72 check_tensors@73 use_extra_bufts@74 no_host@75 no_alloc@76 load_mtp@77
  vocab_only: 72,
  use_extra_bufts: 74,
} as const;

/** struct llama_context_params (160 bytes). */
export const CONTEXT_PARAMS = {
  size: 160,
  n_ctx: 0, // u32
  n_batch: 4,
  n_ubatch: 8,
  n_seq_max: 12,
  n_outputs_max_per_seq: 24, // u32, default 1
  n_threads: 28, // i32
  n_threads_batch: 32,
  flash_attn_type: 52, // enum, default AUTO = -1
  yarn_ext_factor: 64, // f32, default -1
  defrag_thold: 84, // f32, default -1
  cb_eval: 88, // ggml_backend_sched_eval_callback
  cb_eval_user_data: 96,
  type_k: 104, // enum ggml_type, default GGML_TYPE_F16 = 1
  type_v: 108,
  abort_callback: 112,
  abort_callback_data: 120,
  embeddings: 128, // bool
  offload_kqv: 129, // bool, default true
  no_perf: 130, // bool, default true
  op_offload: 131,
  swa_full: 132, // bool, default true
  kv_unified: 133,
  samplers: 136,
  n_samplers: 144,
  ctx_other: 152,
} as const;

/**
 * struct llama_model_quantize_params (64 bytes), passed to llama_model_quantize by pointer and
 * returned by value from llama_model_quantize_default_params (hence the shim).
 */
export const QUANTIZE_PARAMS = {
  size: 64,
  nthread: 0, // i32, default 0 = hardware_concurrency
  ftype: 4, // enum llama_ftype, default LLAMA_FTYPE_MOSTLY_Q8_0 = 7
  output_tensor_type: 8, // enum ggml_type, default GGML_TYPE_COUNT = 43 (choose by ftype)
  token_embedding_type: 12, // default GGML_TYPE_COUNT
  allow_requantize: 16, // bool, default false
  quantize_output_tensor: 17, // bool, default true
  only_copy: 18,
  pure: 19,
  keep_split: 20,
  dry_run: 21,
  imatrix: 24, // pointer
  kv_overrides: 32,
  tt_overrides: 40,
  prune_layers: 48,
  max_buf_size: 56, // size_t, default 8 GiB
} as const;

/** enum llama_ftype values of the target types Steerkit offers (llama.h). */
export const LLAMA_FTYPE = { F16: 1, Q4_0: 2, Q8_0: 7, Q4_K_M: 15, Q5_K_M: 17 } as const;
/** GGML_TYPE_COUNT of the verified release (ggml.h): "no override" in the quantize params. */
export const GGML_TYPE_COUNT = 43;

/** struct llama_batch (56 bytes): n_tokens i32, then six pointers. */
export const BATCH = {
  size: 56,
  n_tokens: 0,
  token: 8,
  embd: 16,
  pos: 24,
  n_seq_id: 32,
  seq_id: 40,
  logits: 48,
} as const;

/** struct ggml_tensor (336 bytes). Must match the T_* defines in shim.c. */
export const TENSOR = {
  size: 336,
  type: 0, // enum ggml_type (i32)
  ne: 16, // int64[4]
  nb: 48, // size_t[4]
  op: 80,
  data: 248,
  name: 256, // char[64]
  nameLength: 64,
} as const;

export const GGML_TYPE_F32 = 0;
export const GGML_TYPE_F16 = 1;

/**
 * sk_point in shim.c: int mode, int rank, four pointers, int pos_from, int pos_to. The shim reports
 * its real layout (`sk_point_layout`), checked at load against this, field by field in this order.
 */
export const SHIM_POINT = { size: 48, mode: 0, rank: 4, U: 8, V: 16, c: 24, scratch: 32, pos_from: 40, pos_to: 44 } as const;
/** sk_hooks in shim.c (checked like SHIM_POINT, through `sk_hooks_layout`). */
export const SHIM_HOOKS = { size: 72, n_embd: 0, n_points: 8, js: 16, points: 24, stop: 32, n_tokens: 36, pos: 40, pre_name: 48, mid_prefix: 56, hits: 64 } as const;
/** sk_batch in shim.c, the batched eval callback's state (checked like SHIM_POINT, through `sk_batch_layout`). */
export const SHIM_BATCH = {
  size: 192,
  n_embd: 0,
  n_points: 8,
  n_groups: 16,
  points: 24,
  notify: 32,
  js_tensor: 40,
  group_first: 48,
  group_count: 56,
  group_out: 64,
  group_stop: 72,
  pos: 80,
  n_tokens: 88,
  n_outputs: 92,
  stop: 96,
  js_done: 100,
  rc: 104,
  js_wanted: 112,
  decode: 120,
  ctx: 128,
  batch: 136,
  pre_name: 144,
  mid_prefix: 152,
  hits: 160,
  hooked: 168,
  work: 172,
  thread: 176,
  started: 184,
} as const;
