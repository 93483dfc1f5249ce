/* rendezvous.h — how the nodes of a multi-node engine group find each other.
 *
 * NCCL needs one 128-byte id (ncclGetUniqueId, made by global rank 0) in
 * every rank before any of them can create its communicator. Within a node
 * glm-engine hands it to its forked ranks over pipes; across nodes this
 * small TCP exchange does it (vLLM/torchrun's --master-addr/--master-port):
 *
 *   node 0's engine listens on master-addr:master-port (eng_rdzv_listen),
 *   every other node's engine connects and sends a hello (eng_rdzv_join):
 *   what it was launched with (node count, its node rank, ranks per node,
 *   expert parallel, batch and length limits, a model fingerprint);
 *   node 0 checks each hello against its own launch and, once every node
 *   has arrived, answers each with the id (eng_rdzv_serve).
 *
 * Everything is bounded: fixed-size messages read with deadlines, one
 * overall timeout on both sides (a node that never comes is an error, not
 * a hang), a per-connection limit for a peer that connects and says
 * nothing. A connection that is not a glmpipe node (wrong magic, a short
 * header) is dropped and node 0 keeps waiting; a node launched differently
 * (other model, sizes, options or protocol version) is refused with the
 * reason and fails the whole launch on both sides; a node rank that has
 * already joined is refused. Pure POSIX sockets: no CUDA, no NCCL.
 *
 * Wire format (integers big-endian): hello = 48 bytes {u32 magic
 * "GLMR", u32 version, u32 nnodes, node_rank, local_ranks, expert_parallel,
 * max_batch_tokens, max_model_len, u64 fingerprint, u64 reserved 0};
 * reply = 336 bytes {u32 magic, u32 version, u32 status (0: ok), u32 0,
 * 128-byte id (status 0), 192-byte NUL-terminated reason (status != 0)}. */
#ifndef ENG_RENDEZVOUS_H
#define ENG_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

#define ENG_RDZV_ID_BYTES 128       /* = sizeof(ncclUniqueId) */
#define ENG_RDZV_VERSION  1

/* What a node was launched with; node 0 refuses a node whose fields other
 * than node_rank differ from its own. */
typedef struct eng_rdzv_info {
    uint32_t nnodes, node_rank;
    uint32_t local_ranks;           /* ranks per node: world = nnodes * local_ranks */
    uint32_t expert_parallel;
    uint32_t max_batch_tokens, max_model_len;
    uint64_t fingerprint;           /* eng_rdzv_fingerprint of the model directory */
} eng_rdzv_info;

typedef struct eng_rdzv_server eng_rdzv_server;

/* Node 0: listen on addr:port (port 0: any free port, see eng_rdzv_port).
 * me->node_rank must be 0. */
int  eng_rdzv_listen(const char *addr, int port, const eng_rdzv_info *me, eng_rdzv_server **out,
                     char *err, size_t errlen);
int  eng_rdzv_port(const eng_rdzv_server *s);
/* Wait up to timeout_s for nodes 1..nnodes-1, then send each the id.
 * peer_timeout_s bounds how long one connection may take to send its hello
 * (<= 0: 5 s). On failure the nodes that had joined are told why. */
int  eng_rdzv_serve(eng_rdzv_server *s, const unsigned char id[ENG_RDZV_ID_BYTES], double timeout_s,
                    double peer_timeout_s, char *err, size_t errlen);
void eng_rdzv_server_free(eng_rdzv_server *s);

/* Nodes 1..nnodes-1: connect to addr:port (retrying while node 0 is not up
 * yet), say hello, wait for the id; all within timeout_s. */
int  eng_rdzv_join(const char *addr, int port, const eng_rdzv_info *me, double timeout_s,
                   unsigned char id[ENG_RDZV_ID_BYTES], char *err, size_t errlen);

/* A 64-bit fingerprint of a model directory: config.json's bytes and the
 * names and sizes of its *.safetensors files (not their contents: reading
 * hundreds of GB to start would cost minutes). Nodes with different copies
 * of the same checkpoint agree; another checkpoint or config disagrees. */
int  eng_rdzv_fingerprint(const char *dir, uint64_t *out, char *err, size_t errlen);

#endif
