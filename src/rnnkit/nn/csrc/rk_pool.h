/* rnnkit kernels: a small thread pool (futex waits) and the even split of work. */
#ifndef RK_POOL_H
#define RK_POOL_H

#include <stdint.h>
#include <stdlib.h>
#include "rk_math.h"

/* ---- a small thread pool ----------------------------------------------------------------
   rk_pool_run(nt, fn, arg) runs fn(tid, nt, arg) on the calling thread (tid 0) and nt-1
   persistent workers; rk_barrier(nt) inside fn waits for all nt. Every wait spins briefly,
   then yields, then sleeps on a futex: fast hand-offs when both cores are free, no cores
   burnt when the machine is shared (spin-waiting OpenMP ran 18x slower then). One job
   at a time: a call that finds the pool busy runs its job alone (nt = 1), with the same
   result, since every kernel splits its work so that each number is computed by the same
   instructions whatever the thread count. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <limits.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
static void rk_futex_wait(atomic_int* addr, int old) { syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0); }
static void rk_futex_wake(atomic_int* addr) { syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0); }
#else
static void rk_futex_wait(atomic_int* addr, int old) { (void)addr; (void)old; sched_yield(); }
static void rk_futex_wake(atomic_int* addr) { (void)addr; }
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define rk_pause() _mm_pause()
#else
#define rk_pause() ((void)0)
#endif
#define RK_MAX_THREADS 64
#define RK_SPIN 256      /* pause instructions: a few microseconds */
#define RK_YIELDS 1024   /* sched_yield calls: some hundreds of microseconds on an idle core,
                            so a worker is still awake for the next step of a generation
                            loop (the output layer and sampling between two steps take
                            ~100 us; waking a sleeping worker cost ~40 us here) */
static struct {
    pthread_mutex_t lock;
    int workers;                     /* worker threads started (tid 1 .. workers) */
    atomic_int job;                  /* bumped to start a job */
    atomic_int done;                 /* workers finished with the job */
    atomic_int sleepers;             /* threads asleep on a futex */
    atomic_int bar_count, bar_gen;   /* the barrier */
    void (*fn)(int, int, void*);
    void* arg;
    int nt;
    int first_job[RK_MAX_THREADS];   /* the job counter when worker tid was started */
} rk_pool = {PTHREAD_MUTEX_INITIALIZER};
static void rk_wait_change(atomic_int* addr, int old) {
    for (int i = 0; i < RK_SPIN; i++) {
        if (atomic_load(addr) != old) return;
        rk_pause();
    }
    /* then yield: when another process holds the other core and both our threads share
       one, the thread we wait for runs at once instead of after our time slice */
    for (int i = 0; i < RK_YIELDS; i++) {
        if (atomic_load(addr) != old) return;
        sched_yield();
    }
    atomic_fetch_add(&rk_pool.sleepers, 1);
    while (atomic_load(addr) == old) rk_futex_wait(addr, old);
    atomic_fetch_sub(&rk_pool.sleepers, 1);
}
static void rk_wake(atomic_int* addr) {
    if (atomic_load(&rk_pool.sleepers) > 0) rk_futex_wake(addr);
}
static void rk_barrier(int nt) {
    if (nt <= 1) return;
    int gen = atomic_load(&rk_pool.bar_gen);
    if (atomic_fetch_add(&rk_pool.bar_count, 1) == nt - 1) {
        atomic_store(&rk_pool.bar_count, 0);
        atomic_fetch_add(&rk_pool.bar_gen, 1);
        rk_wake(&rk_pool.bar_gen);
    } else {
        rk_wait_change(&rk_pool.bar_gen, gen);
    }
}
static void* rk_worker(void* p) {
    int tid = (int)(intptr_t)p;
    int seen = rk_pool.first_job[tid];   /* so that a late start still sees its first job */
    for (;;) {
        rk_wait_change(&rk_pool.job, seen);
        seen = atomic_load(&rk_pool.job);
        if (tid < rk_pool.nt) {
            rk_pool.fn(tid, rk_pool.nt, rk_pool.arg);
            atomic_fetch_add(&rk_pool.done, 1);
            rk_wake(&rk_pool.done);
        }
    }
    return NULL;
}
/* a child made by fork() has none of the parent's workers: start afresh */
static void rk_pool_after_fork_child(void) {
    pthread_mutex_init(&rk_pool.lock, NULL);
    rk_pool.workers = 0;
    atomic_store(&rk_pool.job, 0);
    atomic_store(&rk_pool.done, 0);
    atomic_store(&rk_pool.sleepers, 0);
    atomic_store(&rk_pool.bar_count, 0);
    atomic_store(&rk_pool.bar_gen, 0);
}
static pthread_once_t rk_pool_once = PTHREAD_ONCE_INIT;
static void rk_pool_init(void) { pthread_atfork(NULL, NULL, rk_pool_after_fork_child); }
/* returns the number of threads that ran the job */
static int rk_pool_run(int nt, void (*fn)(int, int, void*), void* arg) {
    if (nt > RK_MAX_THREADS) nt = RK_MAX_THREADS;
    if (nt > 1) pthread_once(&rk_pool_once, rk_pool_init);
    if (nt <= 1 || pthread_mutex_trylock(&rk_pool.lock) != 0) {
        fn(0, 1, arg);
        return 1;
    }
    while (rk_pool.workers < nt - 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        rk_pool.first_job[rk_pool.workers + 1] = atomic_load(&rk_pool.job);
        int ok = pthread_create(&th, &at, rk_worker, (void*)(intptr_t)(rk_pool.workers + 1)) == 0;
        pthread_attr_destroy(&at);
        if (!ok) break;
        rk_pool.workers++;
    }
    if (nt > rk_pool.workers + 1) nt = rk_pool.workers + 1;
    rk_pool.fn = fn; rk_pool.arg = arg; rk_pool.nt = nt;
    atomic_store(&rk_pool.done, 0);
    atomic_store(&rk_pool.bar_count, 0);
    atomic_fetch_add(&rk_pool.job, 1);     /* publishes fn, arg, nt (sequentially consistent) */
    rk_wake(&rk_pool.job);
    fn(0, nt, arg);
    int d;
    while ((d = atomic_load(&rk_pool.done)) != nt - 1) rk_wait_change(&rk_pool.done, d);
    pthread_mutex_unlock(&rk_pool.lock);
    return nt;
}
/* n floats of scratch owned by the calling thread (64-byte aligned; kept and grown, never
   shrunk: a per-call malloc of a few hundred KB is a fresh mmap, its page faults cost more
   than a small step). NULL when the memory is not there. */
static float* rk_scratch(size_t n) {
    static __thread float* buf = NULL;
    static __thread size_t cap = 0;
    return rk_grow(&buf, &cap, n);
}
/* an even split of n units: this thread's [lo, hi) */
static inline void rk_split(int n, int tid, int nt, int* lo, int* hi) {
    *lo = (int)((long long)n * tid / nt);
    *hi = (int)((long long)n * (tid + 1) / nt);
}

#endif /* RK_POOL_H */
