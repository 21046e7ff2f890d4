/*
 * vsock-client <stream|seqpacket> <cid> <port> <bytes>
 *
 * Guest side of the vsock echo check: connects to cid:port, sends <bytes> of
 * the pattern byte i = (i*7+3)&255 in chunks of up to 4096 bytes (one message
 * per chunk for seqpacket), reads each chunk's echo back before sending the
 * next (so neither side can fill up and deadlock), and verifies every byte.
 * Prints exactly one line, "VSOCK <type> OK bytes=<n>" or
 * "VSOCK <type> FAIL <reason>", and exits 0 or 1.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define CHUNK 4096
#define TIMEOUT_S 10

static const char *type_name = "?";

static void fail(const char *fmt, ...) {
    va_list ap;
    printf("VSOCK %s FAIL ", type_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    exit(1);
}

static unsigned char pattern(unsigned long long i) {
    return (unsigned char)((i * 7 + 3) & 255);
}

static unsigned long long parse(const char *s, const char *what) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0') fail("bad %s '%s'", what, s);
    return v;
}

static void send_all(int fd, const unsigned char *buf, size_t len, unsigned long long off) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("send at %llu: %s", off, strerror(errno));
        }
        buf += n;
        len -= (size_t)n;
        off += (unsigned long long)n;
    }
}

static void send_message(int fd, const unsigned char *buf, size_t len, unsigned long long off) {
    ssize_t n;
    do n = send(fd, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) fail("send at %llu: %s", off, strerror(errno));
    if ((size_t)n != len) fail("message at %llu sent %zd of %zu bytes", off, n, len);
}

static void check(const unsigned char *buf, size_t len, unsigned long long off) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != pattern(off + i))
            fail("mismatch at %llu: got %u want %u", off + i, buf[i], pattern(off + i));
    }
}

static void recv_stream(int fd, unsigned char *buf, size_t len, unsigned long long off) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n == 0) fail("eof at %llu", off + got);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) fail("timeout at %llu", off + got);
            fail("recv at %llu: %s", off + got, strerror(errno));
        }
        got += (size_t)n;
    }
    check(buf, len, off);
}

static void recv_message(int fd, unsigned char *buf, size_t len, unsigned long long off) {
    ssize_t n;
    /* A buffer larger than any message sent, so a too-long echo shows as a wrong length. */
    do n = recv(fd, buf, 2 * CHUNK, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0) fail("eof at %llu", off);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) fail("timeout at %llu", off);
        fail("recv at %llu: %s", off, strerror(errno));
    }
    if ((size_t)n != len) fail("message at %llu has length %zd want %zu", off, n, len);
    check(buf, len, off);
}

int main(int argc, char **argv) {
    if (argc >= 2) type_name = argv[1];
    if (argc != 5) fail("usage: vsock-client <stream|seqpacket> <cid> <port> <bytes>");
    int seqpacket = strcmp(argv[1], "seqpacket") == 0;
    if (!seqpacket && strcmp(argv[1], "stream") != 0) fail("unknown type '%s'", argv[1]);
    unsigned long long cid = parse(argv[2], "cid");
    unsigned long long port = parse(argv[3], "port");
    unsigned long long total = parse(argv[4], "bytes");

    int fd = socket(AF_VSOCK, seqpacket ? SOCK_SEQPACKET : SOCK_STREAM, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    struct timeval tv = {.tv_sec = TIMEOUT_S};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        fail("setsockopt: %s", strerror(errno));

    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = (unsigned)cid, .svm_port = (unsigned)port};
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) fail("connect: %s", strerror(errno));

    static unsigned char out[CHUNK], in[2 * CHUNK];
    for (unsigned long long off = 0; off < total;) {
        size_t len = total - off < CHUNK ? (size_t)(total - off) : CHUNK;
        for (size_t i = 0; i < len; i++) out[i] = pattern(off + i);
        if (seqpacket) {
            send_message(fd, out, len, off);
            recv_message(fd, in, len, off);
        } else {
            send_all(fd, out, len, off);
            recv_stream(fd, in, len, off);
        }
        off += len;
    }
    close(fd);
    printf("VSOCK %s OK bytes=%llu\n", type_name, total);
    return 0;
}
