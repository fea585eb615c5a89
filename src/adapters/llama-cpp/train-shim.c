/*
 * TinyCC shim for llama.cpp's training API (llama_opt_init / llama_opt_epoch), compiled at run time
 * like shim.c and, like it, with no #include (the user's machine may have no libc headers).
 *
 * Why a second shim: llama_opt_init takes `struct llama_opt_params` by value, and the optimizer asks
 * for its hyperparameters through a callback that returns `struct ggml_opt_optimizer_params` by value
 * (28 bytes: returned through memory on x86-64 SysV); bun:ffi can do neither. Both structs are spelled
 * out field by field here (from the pinned llama.h / ggml-opt.h), so the C compiler lays them out.
 */

typedef struct {
  float adamw_alpha, adamw_beta1, adamw_beta2, adamw_eps, adamw_wd;
  float sgd_alpha, sgd_wd;
} opt_pars_t;

typedef struct {
  unsigned int n_ctx_train;
  void *param_filter;
  void *param_filter_ud;
  opt_pars_t (*get_opt_pars)(void *);
  void *get_opt_pars_ud;
  int optimizer_type; /* enum ggml_opt_optimizer_type: 0 = AdamW, 1 = SGD */
} lopt_params_t;

typedef void (*opt_init_fn)(void *ctx, void *model, lopt_params_t params);

int sk_sizeof_opt_params(void) { return (int)sizeof(lopt_params_t); }
int sk_sizeof_opt_pars(void) { return (int)sizeof(opt_pars_t); }

/*
 * The schedule the optimizer reads before every step. `ud` is a block JS owns:
 * float lr0, lr_end, beta1, beta2, eps, wd; int step, steps.
 * The learning rate decays linearly from lr0 (step 0) to lr_end (step `steps`); `step` counts the
 * optimizer steps taken (one call per step), so the schedule is a pure function of the step.
 */
opt_pars_t sk_opt_pars(void *ud) {
  float *f = (float *)ud;
  int *step = (int *)ud + 6;
  int steps = *((int *)ud + 7);
  float t = steps > 0 ? (float)*step / (float)steps : 0.0f;
  opt_pars_t p;
  if (t > 1.0f) t = 1.0f;
  p.adamw_alpha = f[0] + (f[1] - f[0]) * t;
  p.adamw_beta1 = f[2];
  p.adamw_beta2 = f[3];
  p.adamw_eps = f[4];
  p.adamw_wd = f[5];
  p.sgd_alpha = p.adamw_alpha;
  p.sgd_wd = f[5];
  (*step)++;
  return p;
}

void sk_opt_init(void *fn, void *ctx, void *model, void *filter, void *schedule, int optimizer_type, unsigned int n_ctx_train) {
  lopt_params_t p;
  p.n_ctx_train = n_ctx_train;
  p.param_filter = filter;
  p.param_filter_ud = 0;
  p.get_opt_pars = sk_opt_pars;
  p.get_opt_pars_ud = schedule;
  p.optimizer_type = optimizer_type;
  ((opt_init_fn)fn)(ctx, model, p);
}

/*
 * Per-token loss weights, through the scheduler's eval callback (cb_eval of the training context).
 *
 * llama_opt_epoch builds one-hot label rows with no per-token weight, and ggml's cross-entropy loss
 * averages over every row. Its backward node (GGML_OP_CROSS_ENTROPY_LOSS_BACK) computes the
 * gradient of the loss with respect to the logits, one row per position, before anything consumes it.
 * The scheduler lets an eval callback see a node right after it is computed, so scaling row r of
 * that gradient by w[r] here trains on sum_r w[r] * loss_r / n: a zero weight masks a position
 * (a prompt token), and weights that average to one keep the step size of the unweighted loss.
 * The forward loss the API reports stays the unweighted mean.
 *
 * `ud` is a block JS owns: int op (the enum value of CROSS_ENTROPY_LOSS_BACK, checked by name at
 * bind time), int n_vocab, int n_rows, int hits (incremented per gradient scaled; -1 on a shape
 * mismatch), then n_rows floats of weights. A gradient of another shape leaves hits at -1 and the
 * gradient untouched, so the caller can fail instead of training on the wrong mask.
 */
typedef struct {
  int op, n_vocab, n_rows, hits;
  float w[];
} loss_weights_t;

_Bool sk_train_weigh(void *t, _Bool ask, void *ud) {
  loss_weights_t *m = (loss_weights_t *)ud;
  char *tb = (char *)t;
  if (*(int *)(tb + 80) != m->op) return ask ? 0 : 1;
  if (ask) return 1;
  long long ne0 = *(long long *)(tb + 16), ne1 = *(long long *)(tb + 24);
  unsigned long nb1 = *(unsigned long *)(tb + 56);
  if (*(int *)tb != 0 || ne0 != m->n_vocab || ne1 != m->n_rows) {
    m->hits = -1;
    return 1;
  }
  char *data = *(char **)(tb + 248);
  for (long long r = 0; r < ne1; r++) {
    float w = m->w[r];
    if (w == 1.0f) continue;
    float *row = (float *)(data + r * nb1);
    for (long long j = 0; j < ne0; j++) row[j] *= w;
  }
  if (m->hits >= 0) m->hits++;
  return 1;
}
