/* comm.h — the collectives tensor/expert-parallel engine ranks use.
 *
 * One interface, two implementations:
 *  - shared memory (comm_shm.c): CPU ranks on one host, as processes forked
 *    by glm-engine or as threads (tests); every rank maps one region;
 *  - NCCL (cuda/comm_nccl.cu, CUDA build only): GPU ranks on one or many nodes.
 *
 * Every collective is called by every rank in the same order with the same
 * sizes. all_reduce_sum adds the ranks' buffers in rank order
 * ((b0 + b1) + b2) + ... for every element, and every rank gets the same
 * bits: the engine's results then depend neither on the batch nor on which
 * rank computed what (batch invariance, and ranks that never diverge).
 *
 * A collective that cannot complete because a peer died (or another rank
 * called eng_comm_abort) returns PL_ERR_IO, and so does every later call:
 * the communicator is dead, the engine fails what is in flight and exits. */
#ifndef ENG_COMM_H
#define ENG_COMM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct eng_comm eng_comm;

/* What an implementation provides. */
typedef struct eng_comm_ops {
    int  (*all_reduce_sum)(eng_comm *c, float *buf, size_t n);
    int  (*all_gather)(eng_comm *c, const void *send, size_t bytes, void *recv);
    int  (*broadcast)(eng_comm *c, void *buf, size_t bytes, int root);
    int  (*barrier)(eng_comm *c);
    void (*abort)(eng_comm *c);
    void (*free)(eng_comm *c);
} eng_comm_ops;

/* Callers use the functions below; only implementations fill this in. */
struct eng_comm {
    const eng_comm_ops *ops;
    int rank, size;
    void *impl;
};

int eng_comm_rank(const eng_comm *c);
int eng_comm_size(const eng_comm *c);

/* In place: buf[i] = sum over ranks r (ascending) of rank r's buf[i]. */
int eng_comm_all_reduce_sum(eng_comm *c, float *buf, size_t n);
/* recv = [rank 0's send | rank 1's send | ...], bytes from each rank. */
int eng_comm_all_gather(eng_comm *c, const void *send, size_t bytes, void *recv);
/* Every rank's buf = root's buf. */
int eng_comm_broadcast(eng_comm *c, void *buf, size_t bytes, int root);
int eng_comm_barrier(eng_comm *c);
/* Mark the group dead: every rank's pending and later collectives fail. */
void eng_comm_abort(eng_comm *c);
void eng_comm_free(eng_comm *c);

/* ===== shared memory (CPU) ===== */

/* The region the ranks share: create it before fork() (or before starting
 * rank threads); every rank then attaches with its own rank number.
 * slot_bytes bounds one chunk per rank (larger collectives are chunked). */
typedef struct eng_shm_group eng_shm_group;
int  eng_shm_group_create(int size, size_t slot_bytes, eng_shm_group **out, char *err, size_t errlen);
/* Unmaps this process's view; call once per process after every rank of
 * the process freed its eng_comm. */
void eng_shm_group_free(eng_shm_group *g);
/* Record rank's process id: while a collective waits, the ranks check that
 * every recorded process is still alive (rank 0 reaps its children; the
 * others watch rank 0). Threads leave it unset (pid 0): nothing to watch. */
void eng_shm_group_set_pid(eng_shm_group *g, int rank, pid_t pid);
int  eng_comm_shm_attach(eng_shm_group *g, int rank, eng_comm **out, char *err, size_t errlen);
/* Whether the group was aborted (a rank died or gave up). */
int  eng_shm_group_dead(const eng_shm_group *g);

/* ===== NCCL (GPU ranks, one or many nodes)
 *
 * Implemented in the CUDA build (engine/cuda/comm_nccl.cu, libnccl opened
 * at run time); a build without nvcc or nccl.h has stubs that return
 * PL_ERR_UNSUPPORTED (engine/cuda/nccl_none.c). Global rank 0 makes the id
 * and the launcher hands it to every rank (glm-engine: pipes to its forked
 * ranks, engine/rendezvous.h to other nodes); each rank then creates its
 * communicator on its device. Buffers may be device or host memory (host
 * buffers are staged through a device copy); a device buffer must be
 * complete when the call is made (the caller synchronises the stream that
 * wrote it) and is complete when the call returns. all_reduce_sum keeps
 * the rank-order sum: it all-gathers the partials and adds them in rank
 * order on the device (ncclAllReduce's ring order moves with the message
 * size, which would break batch invariance). A collective fails with
 * PL_ERR_IO when NCCL reports an asynchronous error (a peer gone), when a
 * watched process exits, or after timeout_s seconds (0: no limit), and
 * aborts the communicator. */
#define ENG_NCCL_ID_BYTES 128
/* 0 when libnccl can be loaded (else PL_ERR_UNSUPPORTED and why). */
int  eng_comm_nccl_available(char *err, size_t errlen);
int  eng_comm_nccl_unique_id(unsigned char id[ENG_NCCL_ID_BYTES], char *err, size_t errlen);
/* Selects device (cudaSetDevice) for the calling thread, then joins the group. */
int  eng_comm_nccl_create(const unsigned char id[ENG_NCCL_ID_BYTES], int rank, int size, int device, double timeout_s,
                          eng_comm **out, char *err, size_t errlen);
/* Processes on this host whose exit fails a waiting collective (rank 0
 * watches the ranks it forked: NCCL does not notice a peer on the same
 * node that died, its shared-memory transport just waits). At most 64. */
void eng_comm_nccl_watch(eng_comm *c, const pid_t *pids, int n);
void eng_comm_nccl_set_timeout(eng_comm *c, double timeout_s);

/* Micro-benchmark: median seconds of one all_reduce_sum of n floats over
 * the group's size ranks as threads (iters rounds each). */
double eng_comm_shm_bench(int size, size_t n, int iters);

#endif
