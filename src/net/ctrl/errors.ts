import { VirtioLabError } from '../../errors.js';

/**
 * Why the device answered a control command VIRTIO_NET_ERR (or could not
 * answer at all): counted by NetCtrlQueue, one code per rejected chain.
 */
export const NET_CTRL_ERROR_CODES = [
  /** No device-writable byte for the ack: completed with used length 0, nothing applied. */
  'NO_ACK_BYTE',
  /** Fewer than 2 readable bytes: no class and command. */
  'HEADER_TOO_SHORT',
  /** A class this device does not know. */
  'UNKNOWN_CLASS',
  /** A command its class does not define. */
  'UNKNOWN_COMMAND',
  /** A command whose feature was not negotiated (5.1.6.5.1.2, 5.1.6.5.2.2, ...). */
  'NOT_NEGOTIATED',
  /** A command the spec defines that this device does not implement (RSS, hash config, offloads without a hook). */
  'UNSUPPORTED',
  /** Fewer command-specific bytes than the command takes. */
  'DATA_TOO_SHORT',
  /** More command-specific bytes than the command takes. */
  'DATA_TOO_LONG',
  /** An rx mode byte other than 0 (off) or 1 (on) (5.1.6.5.1.1). */
  'BAD_ON_OFF',
  /** MAC_TABLE_SET whose entries counts do not match its length exactly (5.1.6.5.2.2). */
  'MAC_TABLE_LENGTH_MISMATCH',
  /** A multicast address in the unicast table or a unicast one in the multicast table (5.1.6.5.2.2). */
  'MAC_TABLE_WRONG_KIND',
  /** MAC_ADDR_SET with a multicast (or broadcast) address. */
  'BAD_MAC',
  /** VLAN_ADD / VLAN_DEL with a VLAN id >= 4096. */
  'VLAN_ID_OUT_OF_RANGE',
  /** VQ_PAIRS_SET outside [1, max_virtqueue_pairs] (5.1.6.5.6.1). */
  'PAIRS_OUT_OF_RANGE',
  /** GUEST_OFFLOADS_SET enabling an offload that was not negotiated (5.1.6.5.8.2). */
  'OFFLOAD_NOT_NEGOTIATED',
] as const;
/** One of NET_CTRL_ERROR_CODES. */
export type NetCtrlErrorCode = (typeof NET_CTRL_ERROR_CODES)[number];

/** Ways a NetCtrlDriver command can fail on the driver side. */
export const NET_CTRL_DRIVER_ERROR_CODES = [
  /** The device did not use the command's buffer within the timeout. */
  'CTRL_TIMEOUT',
  /** The device used the buffer without writing the ack byte (used length 0). */
  'CTRL_NO_ACK',
  /** No free descriptors for the command (the queue is too small). */
  'CTRL_QUEUE_FULL',
  /** The command does not fit the driver's command buffer. */
  'CTRL_COMMAND_TOO_LARGE',
] as const;
export type NetCtrlDriverErrorCode = (typeof NET_CTRL_DRIVER_ERROR_CODES)[number];

/** A control command that got no answer (NetCtrlDriver). A VIRTIO_NET_ERR ack is an answer, not this. */
export class NetCtrlError extends VirtioLabError {
  declare readonly code: NetCtrlDriverErrorCode;

  constructor(code: NetCtrlDriverErrorCode, message: string) {
    super(code, message);
  }
}
