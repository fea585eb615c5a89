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
