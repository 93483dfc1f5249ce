/* libFuzzer target: the msgpack message reader (common/wire.h).
 * Differential: whatever the framing scan accepts within msgpack-c's own 32
 * levels must decode exactly as msgpack_unpack_next decodes it; the scan
 * must reach the same verdict fed whole or in pieces. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

static int scan(pl_wire_scan *s, const uint8_t *d, size_t n, size_t step, size_t *used)
{
    pl_wire_scan_reset(s);
    size_t off = 0;
    int st = PL_WIRE_MORE;
    while (off < n && st == PL_WIRE_MORE) {
        size_t k = step && step < n - off ? step : n - off, u = 0;
        st = pl_wire_scan_feed(s, (const char *)d + off, k, &u);
        off += u;
    }
    *used = off;
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pl_wire_scan *s, *raw;
    static pl_wire_decoder *dec;
    if (!s && (pl_wire_scan_new(&s, 1 << 20, true) || pl_wire_scan_new(&raw, 1 << 20, false) ||
               pl_wire_decoder_new(&dec)))
        return 0;
    size_t used, used2;
    int st = scan(raw, data, size, 0, &used);
    pl_wire_info whole = *pl_wire_scan_info(raw);
    int st2 = scan(raw, data, size, 1 + (size % 7), &used2);
    assert(st == st2 && used == used2 && whole.len == pl_wire_scan_info(raw)->len);
    if (st == PL_WIRE_DONE && pl_wire_acceptable(&whole)) {
        msgpack_object o;
        assert(pl_wire_decode(dec, (const char *)data, used, &o) == PL_OK);
        if (whole.depth <= 32) {
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            size_t off = 0;
            assert(msgpack_unpack_next(&u, (const char *)data, used, &off) == MSGPACK_UNPACK_SUCCESS && off == used);
            /* compared as packed bytes: msgpack_object_equal says NaN != NaN */
            msgpack_sbuffer a, b;
            msgpack_sbuffer_init(&a);
            msgpack_sbuffer_init(&b);
            msgpack_packer pa, pb;
            msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
            msgpack_packer_init(&pb, &b, msgpack_sbuffer_write);
            msgpack_pack_object(&pa, o);
            msgpack_pack_object(&pb, u.data);
            assert(a.size == b.size && !memcmp(a.data, b.data, a.size));
            msgpack_sbuffer_destroy(&a);
            msgpack_sbuffer_destroy(&b);
            msgpack_unpacked_destroy(&u);
        }
    }
    /* the message-mode verdict never accepts what raw mode frames differently */
    st2 = scan(s, data, size, 0, &used2);
    if (st2 == PL_WIRE_DONE) assert(st == PL_WIRE_DONE && used2 == used);
    return 0;
}
