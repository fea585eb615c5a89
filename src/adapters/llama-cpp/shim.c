/*
 * Steerkit's native shim for libllama, compiled at run time by TinyCC (`cc` from bun:ffi).
 *
 * Why it exists: bun:ffi cannot pass or return C structs by value, and a few llama.cpp calls take
 * them (model/context params, llama_batch). It also holds the residual callback that runs inside
 * llama_decode, so declined tensors and native affine edits never cross into JS.
 *
 * It includes no header on purpose: the user's machine may have no libc headers. The by-value
 * structs are opaque blocks of the exact size and alignment of the real ones (x86-64 SysV passes
 * and returns structs over 16 bytes through memory, so only size and alignment matter); fields are
 * written from TypeScript by offset (see abi.ts). Library functions arrive as pointers from JS.
 */

typedef unsigned long sk_size;

/* SIZEOF_* are passed in through `define` from abi.ts so the two cannot disagree. */
typedef struct { long long q[SIZEOF_MODEL_PARAMS / 8]; } model_params_t;
typedef struct { long long q[SIZEOF_CONTEXT_PARAMS / 8]; } context_params_t;
typedef struct { long long q[SIZEOF_BATCH / 8]; } batch_t;
typedef struct { long long q[SIZEOF_QUANTIZE_PARAMS / 8]; } quantize_params_t;

typedef model_params_t (*model_default_params_fn)(void);
typedef context_params_t (*context_default_params_fn)(void);
typedef void *(*model_load_fn)(const char *path, model_params_t params);
typedef void *(*init_from_model_fn)(void *model, context_params_t params);
typedef int (*decode_fn)(void *ctx, batch_t batch);
typedef quantize_params_t (*quantize_default_params_fn)(void);

int sk_sizeof_model_params(void) { return (int)sizeof(model_params_t); }
int sk_sizeof_context_params(void) { return (int)sizeof(context_params_t); }
int sk_sizeof_batch(void) { return (int)sizeof(batch_t); }
int sk_sizeof_quantize_params(void) { return (int)sizeof(quantize_params_t); }

void sk_model_default_params(void *fn, void *out) {
  *(model_params_t *)out = ((model_default_params_fn)fn)();
}

void sk_context_default_params(void *fn, void *out) {
  *(context_params_t *)out = ((context_default_params_fn)fn)();
}

/* llama_model_quantize itself takes the params by pointer: JS calls it directly. */
void sk_quantize_default_params(void *fn, void *out) {
  *(quantize_params_t *)out = ((quantize_default_params_fn)fn)();
}

void *sk_model_load(void *fn, const char *path, const void *params) {
  return ((model_load_fn)fn)(path, *(const model_params_t *)params);
}

void *sk_init_from_model(void *fn, void *model, const void *params) {
  return ((init_from_model_fn)fn)(model, *(const context_params_t *)params);
}

/*
 * The AMX tile configuration (TILECFG), kept across llama_decode calls on this thread.
 *
 * Why: on CPUs with AMX, ggml-cpu multiplies quantized weights (Q4_0, Q8_0, K-quants) with tile
 * kernels and loads its tile shapes only once per thread (amx/mmq.cpp, ggml_tile_config_init, a
 * thread_local "done" flag). TILECFG is per-thread CPU state that any other library may load too:
 * ONNX Runtime's MLAS int8 GEMM (MatMulInteger, which onnxruntime-node runs partly on the calling
 * thread) loads 16x64 tiles everywhere. ggml then runs on shapes it did not ask for and its
 * quantized matmuls return garbage (greedy text collapses into repeated tokens), while F16/F32
 * models, which take no tile path, stay correct. So each decode snapshots TILECFG when it returns
 * and loads it back before the next one: after ggml's first tile kernel on this thread the
 * snapshot is ggml's own shapes; before that, restoring whatever was there is harmless, since ggml
 * still loads its shapes on first use. The shim is compiled once per JS thread (every Worker
 * compiles its own), and llama_decode runs on that thread, so one static snapshot is per thread.
 * Cost: two instructions per decode. Only AMX-capable x86-64 with OS support (XCR0.XTILECFG) takes
 * this path; elsewhere these instructions would fault, so they are never executed.
 */
#if defined(__x86_64__)
static int amx_tiles = -1; /* -1: not probed yet, 0: no AMX, 1: AMX usable */
static unsigned char tile_snapshot[64];
static int tile_snapshot_valid;

static void cpuid(unsigned int leaf, unsigned int sub, unsigned int *r) {
  __asm__ __volatile__("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static int probe_amx_tiles(void) {
  unsigned int r[4];
  unsigned int lo, hi;
  cpuid(0, 0, r);
  if (r[0] < 7) return 0;
  cpuid(1, 0, r);
  if (!(r[2] & (1u << 27))) return 0; /* OSXSAVE: xgetbv is allowed */
  cpuid(7, 0, r);
  if (!(r[3] & (1u << 24))) return 0; /* AMX-TILE */
  __asm__ __volatile__(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); /* xgetbv(0) */
  return (lo & (1u << 17)) != 0; /* the OS saves TILECFG */
}

static void tile_store(unsigned char *cfg) {
  __asm__ __volatile__(".byte 0xc4, 0xe2, 0x79, 0x49, 0x07" : : "D"(cfg) : "memory"); /* sttilecfg [rdi] */
}
static void tile_load(const unsigned char *cfg) {
  __asm__ __volatile__(".byte 0xc4, 0xe2, 0x78, 0x49, 0x07" : : "D"(cfg) : "memory"); /* ldtilecfg [rdi] */
}
#endif

int sk_decode(void *fn, void *ctx, const void *batch) {
#if defined(__x86_64__)
  unsigned char now[64];
  int rc;
  if (amx_tiles < 0) amx_tiles = probe_amx_tiles();
  /* A valid snapshot means tiles were configured in this process, so Linux's AMX permission
   * (arch_prctl ARCH_REQ_XCOMP_PERM, which ggml requests) is granted and ldtilecfg cannot fault. */
  if (amx_tiles && tile_snapshot_valid) tile_load(tile_snapshot);
  rc = ((decode_fn)fn)(ctx, *(const batch_t *)batch);
  if (amx_tiles) {
    tile_store(now);
    if (now[0] != 0) { /* palette 0: tiles not configured, nothing to keep */
      int i;
      for (i = 0; i < 64; i++) tile_snapshot[i] = now[i];
      tile_snapshot_valid = 1;
    }
  }
  return rc;
#else
  return ((decode_fn)fn)(ctx, *(const batch_t *)batch);
#endif
}

/* ggml_abort_callback: llama_decode stops when the flag word is non-zero. */
_Bool sk_abort_flag(void *data) { return *(volatile int *)data != 0; }

/*
 * Log sink: collects error-level messages (GGML_LOG_LEVEL_ERROR = 4, and CONT = 5 lines after one)
 * so a failed call can say why, and drops the rest (llama.cpp prints hundreds of lines per load).
 * `ud` is a buffer: int32 length, int32 "last message was an error", then LOG_CAPACITY bytes. JS
 * resets the length before each call it wants the reason for.
 */
#define LOG_CAPACITY 1016
void sk_log(int level, const char *text, void *ud) {
  int *len = (int *)ud;
  int *in_error = (int *)ud + 1;
  char *buf = (char *)ud + 8;
  int i;
  if (level == 5) {
    if (!*in_error) return;
  } else {
    *in_error = level == 4;
    if (!*in_error) return;
  }
  for (i = 0; text[i] != 0 && *len < LOG_CAPACITY; i++) buf[(*len)++] = text[i];
}

/* ------------------------------------------------------------------------------------------- */
/* Residual hooks: the ggml_backend_sched_eval_callback installed on hooked contexts.           */

/* Offsets into struct ggml_tensor, from abi.ts. */
#define T_TYPE 0
#define T_NE 16
#define T_NB 48
#define T_OP 80
#define T_SRC 152
#define T_DATA 248
#define T_NAME 256

/* enum ggml_op values of the verified release (ggml.h): GGML_OP_ADD, GGML_OP_GET_ROWS. */
#define OP_ADD 2
#define OP_GET_ROWS 40

/* One hook point (index = core's pointIndex: 0 resid_pre.0, 1+2L resid_mid.L, 2+2L resid_post.L). */
typedef struct {
  int mode;      /* 0: not hooked, 1: native affine edit, 2: call JS */
  int rank;
  float *U;      /* [d, rank] row-major */
  float *V;      /* [rank, d] row-major */
  float *c;      /* [d] or 0 */
  float *scratch;/* [rank] */
  int pos_from;  /* the edit touches rows at positions [pos_from, pos_to); */
  int pos_to;    /* pos_to = 0x7fffffff (POS_END in plan.ts) for "to the end" */
} sk_point;

typedef _Bool (*js_hook_fn)(void *tensor, int point);

/* Per architecture (architectures.ts), shared by the one-sequence and the batched callback: the graph
   tensor that is resid_pre.0 ("embd", Gemma's "inp_scaled", GPT-2's "inpL"), and the prefix of the
   mid-block sum ("ffn_inp-", Gemma's "sa_out-"); a null prefix means the sum is unnamed (phi3) and is
   found by its inputs instead. */
typedef struct {
  const char *pre_name;
  const char *mid_prefix;
} sk_names;

typedef struct {
  long long n_embd;
  long long n_points;
  js_hook_fn js;   /* JSCallback for mode-2 points */
  sk_point *points;
  int stop;        /* set by JS when a hook failed: decline everything, end the graph */
  int n_tokens;    /* tokens in the current llama_decode call (one ubatch: n_batch == n_ubatch) */
  const int *pos;  /* their positions, pos[0..n_tokens) (the batch's pos array) */
  sk_names names;
  int *hits;       /* per point: times sk_eval served it in this llama_decode (JS checks every hooked point was reached) */
} sk_hooks;

/* Layout of the two structs above, for abi.ts to check: sizes, then every field's offset. */
#define SK_OFFSET(type, field) ((int)((char *)&((type *)0)->field - (char *)0))
void sk_point_layout(int *out) {
  out[0] = (int)sizeof(sk_point);
  out[1] = SK_OFFSET(sk_point, mode);
  out[2] = SK_OFFSET(sk_point, rank);
  out[3] = SK_OFFSET(sk_point, U);
  out[4] = SK_OFFSET(sk_point, V);
  out[5] = SK_OFFSET(sk_point, c);
  out[6] = SK_OFFSET(sk_point, scratch);
  out[7] = SK_OFFSET(sk_point, pos_from);
  out[8] = SK_OFFSET(sk_point, pos_to);
}
void sk_hooks_layout(int *out) {
  out[0] = (int)sizeof(sk_hooks);
  out[1] = SK_OFFSET(sk_hooks, n_embd);
  out[2] = SK_OFFSET(sk_hooks, n_points);
  out[3] = SK_OFFSET(sk_hooks, js);
  out[4] = SK_OFFSET(sk_hooks, points);
  out[5] = SK_OFFSET(sk_hooks, stop);
  out[6] = SK_OFFSET(sk_hooks, n_tokens);
  out[7] = SK_OFFSET(sk_hooks, pos);
  out[8] = SK_OFFSET(sk_hooks, names.pre_name);
  out[9] = SK_OFFSET(sk_hooks, names.mid_prefix);
  out[10] = SK_OFFSET(sk_hooks, hits);
}

/* Parse "<prefix><int>" and return the int, or -1. */
static int parse_layer(const char *s, const char *prefix) {
  int i = 0, n = 0;
  while (prefix[i] != 0) {
    if (s[i] != prefix[i]) return -1;
    i++;
  }
  if (s[i] < '0' || s[i] > '9') return -1;
  while (s[i] >= '0' && s[i] <= '9') n = n * 10 + (s[i++] - '0');
  return s[i] == 0 ? n : -1;
}

static int same(const char *a, const char *b) {
  int i = 0;
  while (a[i] != 0 && a[i] == b[i]) i++;
  return a[i] == b[i];
}

/* Point index of the block input a tensor is: resid_pre.0 (pre_name) is 0, "l_out-K" is resid_pre.(K+1)
   = resid_post.K at 2 + 2K; -1 otherwise. */
static int residual_input(const char *name, const sk_names *h) {
  int l;
  if (same(name, h->pre_name)) return 0;
  l = parse_layer(name, "l_out-");
  return l >= 0 ? 2 + 2 * l : -1;
}

/* The unnamed mid-block sum of a block written `cur = attn_out + residual` (phi3): an ADD whose second
   input is the block's input (at the last block, the rows of it that get_rows kept). Its layer is one
   past the block input's. */
static int unnamed_mid(char *tc, const sk_names *h) {
  char *r;
  int in;
  if (*(int *)(tc + T_OP) != OP_ADD) return -1;
  r = *(char **)(tc + T_SRC + 8);
  if (r == 0) return -1;
  in = residual_input(r + T_NAME, h);
  /* Not the input itself: at the last block, get_rows(input, out_ids). (Checked second: the token
     embeddings are a get_rows too, of the embedding matrix.) */
  if (in < 0 && *(int *)(r + T_OP) == OP_GET_ROWS && *(char **)(r + T_SRC) != 0) {
    in = residual_input(*(char **)(r + T_SRC) + T_NAME, h);
  }
  return in < 0 ? -1 : in + 1; /* resid_pre.L (0 or 2L) -> resid_mid.L (1 + 2L) */
}

/* Point index of a residual tensor, or -1. Names per llama.cpp's graph: the architecture's block-0
   input (pre_name), the mid-block sum ("<mid_prefix>L", or unnamed_mid), the block output "l_out-L". */
static int point_of(char *tc, const sk_names *h, long long n_points) {
  const char *name = tc + T_NAME;
  int l, idx = -1;
  if (same(name, h->pre_name)) {
    idx = 0;
  } else if (name[0] == 'l' && (l = parse_layer(name, "l_out-")) >= 0) {
    idx = 2 + 2 * l;
  } else if (h->mid_prefix != 0) {
    l = parse_layer(name, h->mid_prefix);
    if (l >= 0) idx = 1 + 2 * l;
  } else {
    idx = unnamed_mid(tc, h);
  }
  return idx < n_points ? idx : -1;
}

/* `pos` holds the positions of the `rows` rows of `x`. */
static void apply_affine(sk_point *p, float *x, long long rows, long long d, const int *pos) {
  long long r, i;
  int j, k = p->rank;
  for (r = 0; r < rows; r++) {
    float *h = x + r * d;
    if (pos[r] < p->pos_from || pos[r] >= p->pos_to) continue;
    for (j = 0; j < k; j++) {
      float s = 0.0f;
      for (i = 0; i < d; i++) s += h[i] * p->U[i * k + j];
      p->scratch[j] = s;
    }
    for (j = 0; j < k; j++) {
      float a = p->scratch[j];
      float *v = p->V + (long long)j * d;
      for (i = 0; i < d; i++) h[i] += a * v[i];
    }
    if (p->c) for (i = 0; i < d; i++) h[i] += p->c[i];
  }
}

_Bool sk_eval(void *t, _Bool ask, void *ud) {
  sk_hooks *hooks = (sk_hooks *)ud;
  char *tc = (char *)t;
  int idx;
  sk_point *p;
  if (hooks->stop) return 0;
  idx = point_of(tc, &hooks->names, hooks->n_points);
  if (idx < 0) return 0;
  p = &hooks->points[idx];
  if (p->mode == 0) return 0;
  if (ask) return 1;
  hooks->hits[idx]++;
  if (p->mode == 2) return hooks->js(t, idx);
  {
    long long *ne = (long long *)(tc + T_NE);
    long long *nb = (long long *)(tc + T_NB);
    long long rows = ne[1];
    /* Only contiguous f32 rows of width n_embd are edited; anything else is left alone (JS checks
       the same and reports it, the native path must never write out of bounds). */
    if (*(int *)(tc + T_TYPE) != 0 || ne[0] != hooks->n_embd || nb[1] != ne[0] * 4) return 1;
    /* The last block computes only the rows that produce logits, which are the last ones of the
       batch: a tensor of fewer rows than tokens holds the last `rows` positions. More rows than
       tokens would be a graph this shim does not know; its rows' positions are unknown, so stop
       rather than edit the wrong rows (never reached with one sequence per context). */
    if (rows > hooks->n_tokens) {
      hooks->stop = 1;
      return 0;
    }
    apply_affine(p, *(float **)(tc + T_DATA), rows, ne[0], hooks->pos + (hooks->n_tokens - rows));
  }
  return 1;
}

/* ------------------------------------------------------------------------------------------- */
/* Batched decoding: several sequences (row groups) in one llama_context and one forward pass,   */
/* run on a native thread so the JS event loop stays free while the weights stream through.     */
/*                                                                                              */
/* One decode thread per batch, for the batch's life: it sleeps on a futex between passes. Why  */
/* not a thread per pass: ggml's CPU backend (when built with OpenMP, as a llama.cpp build on   */
/* Linux is by default) keeps its worker team per calling thread, so a new caller means a new   */
/* team every pass; and a pass must run on a thread whose team outlives it for libgomp's        */
/* barriers to behave as they do in llama.cpp's own tools (see the adapter README).             */

typedef unsigned long sk_thread;
int pthread_create(sk_thread *th, void *attr, void *(*fn)(void *), void *arg);
int pthread_join(sk_thread th, void **ret);
int pthread_setname_np(sk_thread th, const char *name);
long syscall(long n, ...);
#define SYS_FUTEX 202
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1

/* Called on the JS thread (a threadsafe JSCallback): kind 1 = run the JS hooks of `arg`'s point
   over sk_batch.js_tensor, then sk_batch_resume; kind 2 = the pass ended, llama_decode returned `arg`. */
typedef void (*batch_notify_fn)(int kind, int arg);

typedef struct {
  long long n_embd;
  long long n_points;
  long long n_groups;
  sk_point *points;      /* [n_groups * n_points]: group g's point i at points[g * n_points + i] */
  batch_notify_fn notify;
  void *js_tensor;       /* the tensor a kind-1 notification is about */
  int *group_first;      /* [n_groups] first batch row of the group in this pass */
  int *group_count;      /* [n_groups] its rows in this pass (0: not in the pass) */
  int *group_out;        /* [n_groups] index among the pass's output rows, -1 when it has none */
  int *group_stop;       /* [n_groups] set when a group's hook failed: its rows are left alone */
  const int *pos;        /* [n_tokens] the batch's positions */
  int n_tokens;
  int n_outputs;
  int stop;              /* the whole pass: a tensor whose rows this shim cannot place */
  int js_done;           /* futex word: JS sets it when the hooks of a kind-1 notification ran */
  int rc;                /* llama_decode's return code */
  unsigned char *js_wanted; /* [n_points] 1 where some group in the pass runs JS hooks */
  void *decode;          /* decode_fn */
  void *ctx;
  const void *batch;     /* batch_t */
  sk_names names;        /* the architecture's tensor names, as for sk_eval */
  int *hits;             /* [n_points] times sk_eval_batch served the point in this pass (JS checks every hooked point was reached) */
  int hooked;            /* some group in the pass has hooks (else the callback declines every tensor at once) */
  int work;              /* futex word of the decode thread: 0 idle, 1 run a pass, 2 exit */
  sk_thread thread;      /* the decode thread, once `started` */
  int started;
} sk_batch;

void sk_batch_layout(int *out) {
  out[0] = (int)sizeof(sk_batch);
  out[1] = SK_OFFSET(sk_batch, n_embd);
  out[2] = SK_OFFSET(sk_batch, n_points);
  out[3] = SK_OFFSET(sk_batch, n_groups);
  out[4] = SK_OFFSET(sk_batch, points);
  out[5] = SK_OFFSET(sk_batch, notify);
  out[6] = SK_OFFSET(sk_batch, js_tensor);
  out[7] = SK_OFFSET(sk_batch, group_first);
  out[8] = SK_OFFSET(sk_batch, group_count);
  out[9] = SK_OFFSET(sk_batch, group_out);
  out[10] = SK_OFFSET(sk_batch, group_stop);
  out[11] = SK_OFFSET(sk_batch, pos);
  out[12] = SK_OFFSET(sk_batch, n_tokens);
  out[13] = SK_OFFSET(sk_batch, n_outputs);
  out[14] = SK_OFFSET(sk_batch, stop);
  out[15] = SK_OFFSET(sk_batch, js_done);
  out[16] = SK_OFFSET(sk_batch, rc);
  out[17] = SK_OFFSET(sk_batch, js_wanted);
  out[18] = SK_OFFSET(sk_batch, decode);
  out[19] = SK_OFFSET(sk_batch, ctx);
  out[20] = SK_OFFSET(sk_batch, batch);
  out[21] = SK_OFFSET(sk_batch, names.pre_name);
  out[22] = SK_OFFSET(sk_batch, names.mid_prefix);
  out[23] = SK_OFFSET(sk_batch, hits);
  out[24] = SK_OFFSET(sk_batch, hooked);
  out[25] = SK_OFFSET(sk_batch, work);
  out[26] = SK_OFFSET(sk_batch, thread);
  out[27] = SK_OFFSET(sk_batch, started);
}

/* Hand the tensor to JS and sleep until it is done (the decode thread holds the graph meanwhile). */
static void batch_call_js(sk_batch *b, void *t, int idx) {
  b->js_tensor = t;
  *(volatile int *)&b->js_done = 0;
  b->notify(1, idx);
  /* FUTEX_WAIT returns at once when the word is no longer 0, so a wake before the wait is not lost. */
  while (*(volatile int *)&b->js_done == 0) syscall(SYS_FUTEX, &b->js_done, FUTEX_WAIT, 0, 0, 0, 0);
}

/* From JS, once the hooks of a kind-1 notification ran. */
void sk_batch_resume(sk_batch *b) {
  *(volatile int *)&b->js_done = 1;
  syscall(SYS_FUTEX, &b->js_done, FUTEX_WAKE, 1, 0, 0, 0);
}

_Bool sk_eval_batch(void *t, _Bool ask, void *ud) {
  sk_batch *b = (sk_batch *)ud;
  char *tc = (char *)t;
  long long *ne, *nb, rows, g;
  float *data;
  int idx, full;
  if (!b->hooked || b->stop) return 0;
  idx = point_of(tc, &b->names, b->n_points);
  if (idx < 0) return 0;
  if (ask) {
    if (b->js_wanted[idx]) return 1;
    for (g = 0; g < b->n_groups; g++) {
      if (b->group_count[g] > 0 && !b->group_stop[g] && b->points[g * b->n_points + idx].mode == 1) return 1;
    }
    return 0;
  }
  b->hits[idx]++;
  ne = (long long *)(tc + T_NE);
  nb = (long long *)(tc + T_NB);
  rows = ne[1];
  if (*(int *)(tc + T_TYPE) != 0 || ne[0] != b->n_embd || (rows > 1 && nb[1] != ne[0] * 4)) {
    if (b->js_wanted[idx]) batch_call_js(b, t, idx); /* JS reports the layout it cannot hook */
    return 1;
  }
  /* Every row of the pass, or (the last block) only its output rows, one per group that has one. */
  if (rows == b->n_tokens) full = 1;
  else if (rows == b->n_outputs) full = 0;
  else {
    b->stop = 1;
    return 0;
  }
  data = *(float **)(tc + T_DATA);
  for (g = 0; g < b->n_groups; g++) {
    sk_point *p = &b->points[g * b->n_points + idx];
    if (p->mode != 1 || b->group_count[g] == 0 || b->group_stop[g]) continue;
    if (full) {
      int first = b->group_first[g];
      apply_affine(p, data + (long long)first * ne[0], b->group_count[g], ne[0], b->pos + first);
    } else if (b->group_out[g] >= 0) {
      int last = b->group_first[g] + b->group_count[g] - 1;
      apply_affine(p, data + (long long)b->group_out[g] * ne[0], 1, ne[0], b->pos + last);
    }
  }
  if (b->js_wanted[idx]) batch_call_js(b, t, idx);
  return 1;
}

/* The decode thread: a pass each time `work` turns 1, until it turns 2. `work` goes back to 0 before
   the pass-end notification, so a pass JS starts from that notification is never lost; FUTEX_WAIT
   returns at once when the word is no longer 0, so a wake before the wait is not lost either. */
static void *batch_loop(void *arg) {
  sk_batch *b = (sk_batch *)arg;
  int w;
  for (;;) {
    while ((w = *(volatile int *)&b->work) == 0) syscall(SYS_FUTEX, &b->work, FUTEX_WAIT, 0, 0, 0, 0);
    if (w == 2) return 0;
    b->rc = ((decode_fn)b->decode)(b->ctx, *(const batch_t *)b->batch);
    *(volatile int *)&b->work = 0;
    b->notify(2, b->rc);
  }
}

/* Run llama_decode(b->ctx, *b->batch) on the batch's decode thread (started on the first pass);
   returns pthread_create's code (0: the pass is on its way). Only while no pass runs. */
int sk_batch_decode_async(sk_batch *b) {
  if (!b->started) {
    int rc;
    *(volatile int *)&b->work = 0;
    rc = pthread_create(&b->thread, 0, batch_loop, b);
    if (rc != 0) return rc;
    pthread_setname_np(b->thread, "sk-decode"); /* for top/perf and the tests; a failure is harmless */
    b->started = 1;
  }
  *(volatile int *)&b->work = 1;
  syscall(SYS_FUTEX, &b->work, FUTEX_WAKE, 1, 0, 0, 0);
  return 0;
}

/* End the decode thread and wait for it (before the context is freed). Only while no pass runs. */
void sk_batch_stop(sk_batch *b) {
  if (!b->started) return;
  *(volatile int *)&b->work = 2;
  syscall(SYS_FUTEX, &b->work, FUTEX_WAKE, 1, 0, 0, 0);
  pthread_join(b->thread, 0);
  b->started = 0;
}
