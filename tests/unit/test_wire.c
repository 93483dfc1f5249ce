/* common/wire: message framing by declared lengths, limits, decoding deeper
 * than msgpack-c's own 32 levels. */
#include "test.h"
#include "wire.h"

static msgpack_sbuffer g_sb;
static msgpack_packer g_pk;

static msgpack_packer *pk_new(void)
{
    msgpack_sbuffer_destroy(&g_sb);
    msgpack_sbuffer_init(&g_sb);
    msgpack_packer_init(&g_pk, &g_sb, msgpack_sbuffer_write);
    return &g_pk;
}

/* Scan data whole (or one byte at a time): the status and *used. */
static int scan(pl_wire_scan *s, const char *data, size_t len, int bytewise, size_t *used)
{
    pl_wire_scan_reset(s);
    size_t off = 0;
    int st = PL_WIRE_MORE;
    while (off < len && st == PL_WIRE_MORE) {
        size_t n = bytewise ? 1 : len - off, u = 0;
        st = pl_wire_scan_feed(s, data + off, n, &u);
        off += u;
    }
    *used = off;
    return st;
}

/* One message with every msgpack format in it. */
static void pack_every_format(msgpack_packer *pk, const char *id)
{
    static char big[70000];
    memset(big, 'x', sizeof big);
    msgpack_pack_map(pk, 14);
    pl_msg_pack_kv_cstr(pk, "type", "t");
    pl_msg_pack_kv_str(pk, "str8", big, 40);
    pl_msg_pack_kv_str(pk, "str16", big, 300);
    pl_msg_pack_kv_str(pk, "str32", big, sizeof big);
    pl_msg_pack_cstr(pk, "bin");
    msgpack_pack_bin_with_body(pk, big, 5);
    pl_msg_pack_cstr(pk, "ext");
    msgpack_pack_ext_with_body(pk, big, 3, 7);           /* ext 8 */
    pl_msg_pack_cstr(pk, "fixext");
    msgpack_pack_ext_with_body(pk, big, 8, -1);          /* fixext 8 */
    pl_msg_pack_cstr(pk, "ints");
    msgpack_pack_array(pk, 9);
    msgpack_pack_uint8(pk, 200);
    msgpack_pack_uint16(pk, 60000);
    msgpack_pack_uint32(pk, 4000000000u);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_int8(pk, -100);
    msgpack_pack_int16(pk, -30000);
    msgpack_pack_int32(pk, -2000000000);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_int64(pk, 5);                           /* a non-negative signed int: POSITIVE_INTEGER */
    pl_msg_pack_cstr(pk, "floats");
    msgpack_pack_array(pk, 2);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, -2.25);
    pl_msg_pack_cstr(pk, "consts");
    msgpack_pack_array(pk, 3);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    pl_msg_pack_cstr(pk, "empty");
    msgpack_pack_array(pk, 3);
    msgpack_pack_str(pk, 0);
    msgpack_pack_map(pk, 0);
    msgpack_pack_array(pk, 0);
    pl_msg_pack_cstr(pk, "arr16");
    msgpack_pack_array(pk, 20);
    for (int i = 0; i < 20; i++) msgpack_pack_int(pk, i);
    pl_msg_pack_cstr(pk, "map16");
    msgpack_pack_map(pk, 17);
    for (int i = 0; i < 17; i++) { msgpack_pack_int(pk, i); msgpack_pack_nil(pk); }
    pl_msg_pack_kv_cstr(pk, "id", id);                   /* after the big fields: still found */
}

TEST(wire_frames_every_format_whole_and_split)
{
    pl_wire_scan *s;
    CHECK(pl_wire_scan_new(&s, 1 << 20, true) == 0);
    pack_every_format(pk_new(), "r1");
    /* followed by the start of the next message: the scan stops at the end */
    msgpack_pack_map(&g_pk, 1);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        size_t used;
        CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, bytewise, &used), PL_WIRE_DONE);
        const pl_wire_info *in = pl_wire_scan_info(s);
        CHECK_EQ_INT(used, g_sb.size - 1);
        CHECK_EQ_INT(in->len, g_sb.size - 1);
        CHECK(in->has_id && in->idlen == 2 && !memcmp(in->id, "r1", 2));
        CHECK_EQ_INT(in->depth, 3);   /* the empty map and array inside "empty" count as a level */
        CHECK(pl_wire_acceptable(in));
    }
    /* the decode equals msgpack-c's own */
    pl_wire_decoder *d;
    CHECK(pl_wire_decoder_new(&d) == 0);
    msgpack_object o;
    CHECK(pl_wire_decode(d, g_sb.data, g_sb.size - 1, &o) == 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, g_sb.data, g_sb.size - 1, NULL) == MSGPACK_UNPACK_SUCCESS);
    CHECK(msgpack_object_equal(o, u.data));
    const msgpack_object_array *ints;
    CHECK(pl_msg_get_array(&o, "ints", &ints) == 0 && ints->ptr[8].type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    /* an empty string still points somewhere (a NULL with length 0 reaches memcpy downstream) */
    const msgpack_object_array *empty;
    CHECK(pl_msg_get_array(&o, "empty", &empty) == 0 && empty->ptr[0].via.str.ptr != NULL);
    msgpack_unpacked_destroy(&u);
    pl_wire_decoder_free(d);
    pl_wire_scan_free(s);
}

/* {"id": id, "v": [[[...1...]]]} nested `depth` containers in all */
static void pack_nested(msgpack_packer *pk, int depth)
{
    msgpack_pack_map(pk, 2);
    pl_msg_pack_kv_cstr(pk, "id", "deep");
    pl_msg_pack_cstr(pk, "v");
    for (int i = 1; i < depth; i++) msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 1);
}

TEST(wire_nesting_limit_beyond_msgpack_c)
{
    pl_wire_scan *s;
    pl_wire_decoder *d;
    CHECK(pl_wire_scan_new(&s, 1 << 20, true) == 0 && pl_wire_decoder_new(&d) == 0);
    size_t used;
    msgpack_object o;
    /* msgpack-c's own unpacker stops at 32 levels */
    pack_nested(pk_new(), 33);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, g_sb.data, g_sb.size, NULL) == MSGPACK_UNPACK_NOMEM_ERROR);
    msgpack_unpacked_destroy(&u);
    /* ours takes PL_MSG_MAX_DEPTH */
    pack_nested(pk_new(), PL_MSG_MAX_DEPTH);
    CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, 0, &used), PL_WIRE_DONE);
    CHECK_EQ_INT(pl_wire_scan_info(s)->depth, PL_MSG_MAX_DEPTH);
    CHECK(pl_wire_acceptable(pl_wire_scan_info(s)));
    CHECK(pl_wire_decode(d, g_sb.data, g_sb.size, &o) == 0);
    const msgpack_object *v = pl_msg_get(&o, "v");
    for (int i = 2; v && i < PL_MSG_MAX_DEPTH; i++) v = v->type == MSGPACK_OBJECT_ARRAY ? &v->via.array.ptr[0] : NULL;
    CHECK(v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.ptr[0].via.u64 == 1);
    /* one more: framed, its id known, not accepted */
    pack_nested(pk_new(), PL_MSG_MAX_DEPTH + 1);
    CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, 1, &used), PL_WIRE_DONE);
    CHECK(pl_wire_scan_info(s)->too_deep && pl_wire_scan_info(s)->has_id && used == g_sb.size);
    char why[200];
    pl_wire_reject_text(pl_wire_scan_info(s), 1 << 20, why, sizeof why);
    CHECK(strstr(why, "136 levels") && strstr(why, "128 levels"));
    /* framing gives up only past PL_WIRE_HARD_DEPTH */
    pack_nested(pk_new(), PL_WIRE_HARD_DEPTH);
    CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, 0, &used), PL_WIRE_DONE);
    pack_nested(pk_new(), PL_WIRE_HARD_DEPTH + 1);
    CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, 0, &used), PL_WIRE_BAD);
    pl_wire_decoder_free(d);
    pl_wire_scan_free(s);
}

TEST(wire_oversized_known_from_headers)
{
    pl_wire_scan *s;
    CHECK(pl_wire_scan_new(&s, 4096, true) == 0);
    size_t used;
    /* {"id":"big","s": <str32 of 2 GiB>}: oversized as soon as the header is read */
    const char hdr[] = "\x82\xa2id\xa3" "big\xa1s\xdb\x80\x00\x00\x00";
    CHECK_EQ_INT(scan(s, hdr, sizeof hdr - 1, 0, &used), PL_WIRE_MORE);
    CHECK(pl_wire_scan_info(s)->oversized && pl_wire_scan_info(s)->has_id);
    /* a 5-byte header claiming 2^32-1 pairs */
    const char bomb[] = "\x82\xa2id\xa1x\xa1m\xdf\xff\xff\xff\xff";
    CHECK_EQ_INT(scan(s, bomb, sizeof bomb - 1, 0, &used), PL_WIRE_MORE);
    CHECK(pl_wire_scan_info(s)->oversized);
    /* exactly at the limit is fine, one byte over is not */
    static char fill[5000];
    for (int over = 0; over < 2; over++) {
        msgpack_packer *pk = pk_new();
        msgpack_pack_map(pk, 2);
        pl_msg_pack_kv_cstr(pk, "id", "a");
        pl_msg_pack_cstr(pk, "s");
        msgpack_pack_str_with_body(pk, fill, 4096 - 11 + over);   /* 11 bytes of envelope */
        CHECK_EQ_INT(g_sb.size, 4096 + over);
        CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, 1, &used), PL_WIRE_DONE);
        CHECK_EQ_INT(pl_wire_scan_info(s)->oversized, over);
    }
    pl_wire_scan_free(s);
}

TEST(wire_not_messages)
{
    pl_wire_scan *s, *raw;
    CHECK(pl_wire_scan_new(&s, 4096, true) == 0 && pl_wire_scan_new(&raw, 4096, false) == 0);
    size_t used;
    CHECK_EQ_INT(scan(s, "\xc1", 1, 0, &used), PL_WIRE_BAD);
    CHECK_EQ_INT(scan(s, "\x92\x01\x02", 3, 0, &used), PL_WIRE_BAD);       /* not a map */
    CHECK(used == 1 && !strcmp(pl_wire_scan_info(s)->bad, "not a map"));
    CHECK_EQ_INT(scan(raw, "\x92\x01\x02", 3, 0, &used), PL_WIRE_DONE);     /* glm-msg takes it */
    CHECK_EQ_INT(scan(s, "\x81\x01\x02", 3, 0, &used), PL_WIRE_BAD);       /* a key that is not a string */
    CHECK_EQ_INT(scan(s, "\x81\xa1k\x91\xc1", 5, 0, &used), PL_WIRE_BAD);  /* 0xc1 deep inside */
    CHECK_EQ_INT(used, 5);
    /* ids: the first "id" counts; too long, empty or not a string is no id */
    CHECK_EQ_INT(scan(s, "\x82\xa2id\xa1" "a\xa2id\xa1" "b", 11, 0, &used), PL_WIRE_DONE);
    CHECK(pl_wire_scan_info(s)->has_id && pl_wire_scan_info(s)->id[0] == 'a');
    CHECK_EQ_INT(scan(s, "\x81\xa2id\x05", 5, 0, &used), PL_WIRE_DONE);
    CHECK(!pl_wire_scan_info(s)->has_id && pl_wire_scan_info(s)->id_key);   /* a message all the same: skipped whole */
    CHECK_EQ_INT(scan(s, "\x81\xa2id\xa0", 5, 0, &used), PL_WIRE_DONE);
    CHECK(!pl_wire_scan_info(s)->has_id);
    msgpack_packer *pk = pk_new();
    char longid[PL_MSG_ID_MAX + 1];
    memset(longid, 'i', sizeof longid);
    msgpack_pack_map(pk, 1);
    pl_msg_pack_kv_str(pk, "id", longid, sizeof longid);
    CHECK_EQ_INT(scan(s, g_sb.data, g_sb.size, 0, &used), PL_WIRE_DONE);
    CHECK(!pl_wire_scan_info(s)->has_id);
    /* an "id" nested below the root is not the message's id */
    CHECK_EQ_INT(scan(s, "\x81\xa1m\x81\xa2id\xa1x", 9, 0, &used), PL_WIRE_DONE);
    CHECK(!pl_wire_scan_info(s)->has_id);
    pl_wire_scan_free(s);
    pl_wire_scan_free(raw);
}

int main(void)
{
    msgpack_sbuffer_init(&g_sb);
    RUN(wire_frames_every_format_whole_and_split);
    RUN(wire_nesting_limit_beyond_msgpack_c);
    RUN(wire_oversized_known_from_headers);
    RUN(wire_not_messages);
    msgpack_sbuffer_destroy(&g_sb);
    return test_report();
}
