/**
 * The named limits and defaults of the vsock connection layer, in one place.
 * Linux names are those of net/vmw_vsock (af_vsock.c, virtio_transport_common.c).
 */

/** Listen on every port that has no listener of its own. Never allocated as a local port. */
export const VSOCK_PORT_ANY = 0xffffffff;
/** First ephemeral port (Linux: LAST_RESERVED_PORT + 1). */
export const VSOCK_EPHEMERAL_PORT_FIRST = 1024;
/** Last ephemeral port: every u32 below VSOCK_PORT_ANY. */
export const VSOCK_EPHEMERAL_PORT_LAST = 0xfffffffe;
/** Default connection cap of a stack. */
export const VSOCK_DEFAULT_MAX_CONNECTIONS = 4096;
/** Linux VSOCK_DEFAULT_CONNECT_TIMEOUT (2 s). */
export const VSOCK_DEFAULT_CONNECT_TIMEOUT_MS = 2000;
/** Linux VSOCK_CLOSE_TIMEOUT (8 s): how long a close waits for the peer's RST. */
export const VSOCK_DEFAULT_CLOSE_TIMEOUT_MS = 8000;
/**
 * How long a sender stalled on credit waits for the peer's own CREDIT_UPDATE
 * before it asks with a CREDIT_REQUEST (5.10.6.3). A peer that follows the
 * update rule (Linux, this stack: an update once its reader frees space and
 * our view of its free space is below one packet) always tells a stalled
 * sender within a round trip, so a request at the stall only doubles the
 * credit traffic (the peer answers with the numbers it just sent). Linux
 * never sends one; the request stays as the fallback for a peer that waits
 * to be asked.
 */
export const VSOCK_DEFAULT_CREDIT_REQUEST_DELAY_MS = 100;
/** Default listen backlog (Linux SOMAXCONN before 5.4). */
export const VSOCK_DEFAULT_BACKLOG = 128;
/**
 * RST answers to packets of no connection that may wait for room in the port;
 * beyond, they are dropped and counted `rstDropped` (a flood of hostile
 * packets must not grow memory). Control packets of connections are never
 * dropped: each connection has at most a handful queued (credit packets
 * coalesce).
 */
export const VSOCK_MAX_QUEUED_RESETS = 256;
/** Entries the control queue starts with (it doubles when full). */
export const VSOCK_CONTROL_QUEUE_INITIAL = 64;
/**
 * Bytes a stream socket's Readable holds before fwd_cnt stops advancing:
 * one maximum packet, set here because Node's default moved from 16 KiB
 * (Node 20) to 64 KiB (Node 22), and credit must not depend on the runtime.
 */
export const VSOCK_READABLE_HIGH_WATER_MARK = 64 * 1024;
