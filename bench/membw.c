// Memory read bandwidth with T threads: each thread sums its share of a 1 GiB buffer (far past
// any cache), best of 5 passes. This is the ceiling decode speed is compared against: decoding
// one token reads every weight once. The buffer sits on 2 MiB pages where the kernel gives them
// (herd copies its weights onto huge pages too): on 4 KiB pages the TLB misses of two threads
// held the figure under what the engines themselves read. Built and run by
// bench/bench_vs_llama_cpp.py:
//   gcc -O3 -march=native -ffast-math -pthread bench/membw.c -o membw && ./membw 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define BYTES (1UL << 30)

static float *buf;
static size_t per;
static volatile float sink;

static void *reader(void *arg) {
    const float *p = buf + (size_t)arg * per;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= per; i += 4) {
        s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
    }
    sink = s0 + s1 + s2 + s3;
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) return 2;
    if (posix_memalign((void **)&buf, 2UL << 20, BYTES)) return 1;
    madvise(buf, BYTES, MADV_HUGEPAGE); // a hint: 4 KiB pages still work where it is refused
    memset(buf, 1, BYTES);
    per = BYTES / sizeof(float) / threads;
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        pthread_t th[256];
        double t0 = now();
        for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, reader, (void *)i);
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("%.2f\n", BYTES / best / 1e9);
    return 0;
}
