/*
 * LD_PRELOAD shim for bench/llama-cpu-path.ts: llama.cpp without ggml's "extra buffer types".
 *
 * libllama asks the CPU backend for its extra weight buffer types (AMX tile layout, repacked
 * Q4_0/Q8_0 layouts) through ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts")
 * and places the quantized matrices there when the list is non-empty. Answering NULL for that one
 * name is exactly llama_model_params.use_extra_bufts = false (llama-model.cpp skips the list), which
 * the Steerkit adapter does not expose; the benchmark needs it to show what the repacked kernels are
 * worth. Every other name is forwarded to libggml's own function.
 *
 * libggml may be loaded RTLD_LOCAL by the host (bun:ffi), where RTLD_NEXT cannot see it: then the
 * real function is looked up in the library named by SK_LIBGGML (already loaded: RTLD_NOLOAD).
 * sk_no_extra_bufts_refusals() counts the refusals, so the caller can check the shim was in effect.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*proc_address_fn)(void *, const char *);

static int refusals;

int sk_no_extra_bufts_refusals(void) { return refusals; }

void *ggml_backend_reg_get_proc_address(void *reg, const char *name) {
  static proc_address_fn real;
  if (!real) real = (proc_address_fn)dlsym(RTLD_NEXT, "ggml_backend_reg_get_proc_address");
  if (!real && getenv("SK_LIBGGML")) {
    void *lib = dlopen(getenv("SK_LIBGGML"), RTLD_LAZY | RTLD_NOLOAD);
    if (lib) real = (proc_address_fn)dlsym(lib, "ggml_backend_reg_get_proc_address");
  }
  if (!real) {
    fprintf(stderr, "no-extra-bufts: cannot find libggml's ggml_backend_reg_get_proc_address (set SK_LIBGGML)\n");
    abort();
  }
  if (name && strcmp(name, "ggml_backend_dev_get_extra_bufts") == 0) {
    refusals++;
    return NULL;
  }
  return real(reg, name);
}
