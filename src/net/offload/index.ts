/**
 * virtio-net transmit offloads on the device side (virtio 1.2 5.1.6.2): the
 * virtio_net_hdr, partial checksum completion, and Linux-style segmentation
 * (TSO, USO, UFO) of GSO frames into wire frames.
 */
export { NetHdr } from './net-hdr.js';
export { OFFLOAD_ERROR_CODES, type OffloadErrorCode } from './offload-error.js';
export { OffloadEngine, type FrameSink } from './offload-engine.js';
export { PacketInfo, parsePacket } from '../../wire/packet.js';
export { checksumOf, copyAndSum, foldSum, pseudoSumV4, pseudoSumV6, sumBytes } from '../../wire/checksum.js';
