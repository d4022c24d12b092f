// Greedy continuation of a prompt by llama.cpp, through its C API, as JSON: the reference
// for herd's golden tests on GGUF models (scripts/make_llama_cpp_fixtures.sh builds and runs it).
//
// usage: llama_greedy MODEL.gguf PROMPT N_NEW [--ignore-eos]
// Context 2048, one thread, BOS added as the vocabulary says, special tokens not parsed,
// argmax of the logits (llama_sampler_init_greedy does the same), one token per decode call.
// The KV cache is F32 and flash attention off, so that the reference holds the same
// precision as herd's engine (llama.cpp's default F16 cache flips near-ties late in long runs).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

static void put_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') { putchar('\\'); putchar(*p); }
        else if (*p == '\n') fputs("\\n", stdout);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s MODEL PROMPT N_NEW [--ignore-eos]\n", argv[0]); return 2; }
    const char *path = argv[1], *prompt = argv[2];
    int n_new = atoi(argv[3]);
    int ignore_eos = argc > 4 && strcmp(argv[4], "--ignore-eos") == 0;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048; cp.n_batch = 2048; cp.n_threads = 1; cp.n_threads_batch = 1;
    cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    llama_token toks[4096];
    int n = llama_tokenize(vocab, prompt, (int)strlen(prompt), toks, 4096, /*add_special*/ true, /*parse_special*/ false);
    if (n < 0) { fprintf(stderr, "prompt too long\n"); return 1; }
    int n_vocab = llama_vocab_n_tokens(vocab);
    printf("{\"model\": "); put_json_string(strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    printf(", \"prompt\": "); put_json_string(prompt);
    printf(", \"prompt_ids\": [");
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", toks[i]);
    printf("], \"greedy_new_ids\": [");
    if (llama_decode(ctx, llama_batch_get_one(toks, n))) { fprintf(stderr, "decode failed\n"); return 1; }
    char text[65536]; size_t text_len = 0; int stopped = 0;
    // The five highest logits of each step, so that tests can compare values, not just argmaxes.
    static char tops[1 << 20]; size_t tops_len = 0;
    for (int k = 0; k < n_new; k++) {
        const float *logits = llama_get_logits_ith(ctx, -1);
        llama_token best = 0;
        for (int t = 1; t < n_vocab; t++) if (logits[t] > logits[best]) best = t;
        if (!ignore_eos && llama_vocab_is_eog(vocab, best)) { stopped = 1; break; }
        printf("%s%d", k ? ", " : "", best);
        int top[5]; int nt = 0;
        for (int r = 0; r < 5 && r < n_vocab; r++) {
            int bi = -1;
            for (int t = 0; t < n_vocab; t++) {
                int used = 0; for (int q = 0; q < nt; q++) used |= top[q] == t;
                if (!used && (bi < 0 || logits[t] > logits[bi])) bi = t;
            }
            top[nt++] = bi;
        }
        tops_len += snprintf(tops + tops_len, sizeof tops - tops_len, "%s[", k ? ", " : "");
        for (int r = 0; r < nt; r++)
            tops_len += snprintf(tops + tops_len, sizeof tops - tops_len, "%s[%d, %.6f]", r ? ", " : "", top[r], logits[top[r]]);
        tops_len += snprintf(tops + tops_len, sizeof tops - tops_len, "]");
        char piece[256];
        int m = llama_token_to_piece(vocab, best, piece, sizeof piece, 0, false);
        if (m > 0 && text_len + m < sizeof text) { memcpy(text + text_len, piece, m); text_len += m; }
        if (llama_decode(ctx, llama_batch_get_one(&best, 1))) { fprintf(stderr, "decode failed\n"); return 1; }
    }
    text[text_len] = 0;
    printf("], \"top5\": [%s]", tops);
    printf(", \"stopped_at_eos\": %s, \"continuation_text\": ", stopped ? "true" : "false");
    put_json_string(text);
    printf("}\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
