// Tokenizes texts with llama.cpp, for scripts/make_llama_cpp_tokenizer_fixture.py.
//
//   llama_cpp_tokenize MODEL.gguf < texts
//
// stdin: records of a little-endian u32 byte length followed by the text. For every text,
// prints two lines of ids: add_special=false parse_special=false, then true/true.
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char * text, void * user) {
    (void) level; (void) text; (void) user;
}

static void print_ids(const struct llama_vocab * vocab, const char * text, int32_t len, bool special) {
    int32_t cap = len + 16;
    llama_token * ids = malloc(sizeof(llama_token) * cap);
    int32_t n = llama_tokenize(vocab, text, len, ids, cap, special, special);
    if (n < 0) {
        cap = -n;
        ids = realloc(ids, sizeof(llama_token) * cap);
        n = llama_tokenize(vocab, text, len, ids, cap, special, special);
    }
    for (int32_t i = 0; i < n; i++) {
        printf(i ? " %d" : "%d", ids[i]);
    }
    printf("\n");
    free(ids);
}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf < texts\n", argv[0]);
        return 1;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    uint8_t len_bytes[4];
    while (fread(len_bytes, 1, 4, stdin) == 4) {
        int32_t len = (int32_t) (len_bytes[0] | len_bytes[1] << 8 | len_bytes[2] << 16 | (uint32_t) len_bytes[3] << 24);
        char * text = malloc(len + 1);
        if (fread(text, 1, len, stdin) != (size_t) len) {
            fprintf(stderr, "truncated input\n");
            return 1;
        }
        print_ids(vocab, text, len, false);
        print_ids(vocab, text, len, true);
        free(text);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
