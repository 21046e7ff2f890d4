/**
 * virtio-net transmit offloads on the device side (virtio 1.2 5.1.6.2): the
 * virtio_net_hdr, partial checksum completion, and Linux-style segmentation
 * (TSO, USO, UFO) of GSO frames into wire frames. Packet parsing and
 * checksums are the wire module's (src/wire/).
 */
export { NetHdr } from './net-hdr.js';
export { OFFLOAD_ERROR_CODES, type OffloadErrorCode } from './offload-error.js';
export { OffloadEngine, type FrameSink } from './offload-engine.js';
