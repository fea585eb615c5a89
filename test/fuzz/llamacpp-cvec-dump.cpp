// Prints what llama.cpp's own control-vector loader (common_control_vector_load, the code behind
// `--control-vector`) reads from each file named on stdin, one JSON line per file:
//   {"n_embd": N, "data": [...]}  (layer 1 first, n_embd floats per layer, as llama_set_adapter_cvec takes it)
//   {"n_embd": -1}                (llama.cpp refuses the file: it logs why and, in its tools, generates unsteered)
// Ours (MIT like the rest of Steerkit); build against the pinned llama.cpp, see control-vector-llamacpp.ts.
#include "common.h"
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
int main() {
    std::string path;
    while (std::getline(std::cin, path)) {
        common_control_vector_data d = common_control_vector_load({{1.0f, path}});
        std::printf("{\"n_embd\":%d", d.n_embd);
        if (d.n_embd != -1) {
            std::printf(",\"data\":[");
            for (size_t i = 0; i < d.data.size(); i++) {
                float x = d.data[i];
                if (std::isfinite(x)) std::printf(i ? ",%.9g" : "%.9g", x);
                else std::printf(i ? ",\"%s\"" : "\"%s\"", std::isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
            }
            std::printf("]");
        }
        std::printf("}\n");
        std::fflush(stdout);
    }
    return 0;
}
