/**
 * Every way a virtio_net_hdr and its frame can be unusable for the device's
 * checksum and segmentation offloads. Each is a stable string code, used as a
 * stats key: bad guest data is counted, never thrown.
 */
export const OFFLOAD_ERROR_CODES = [
  /** NEEDS_CSUM: csum_start leaves no room for the 16-bit field; GSO: it is not the transport header. */
  'BAD_CSUM_START',
  /** NEEDS_CSUM: the field is odd-aligned or past the frame; GSO: it is not the TCP/UDP checksum. */
  'BAD_CSUM_OFFSET',
  /** gso_type is not one of NONE, TCPV4, UDP, TCPV6, UDP_L4, or has the ECN bit without TCP. */
  'BAD_GSO_TYPE',
  /** gso_size is 0 on a GSO frame, or below one 8-byte fragment unit for UFO. */
  'BAD_GSO_SIZE',
  /** hdr_len is past the end of the frame. */
  'BAD_HDR_LEN',
  /** A GSO frame without NEEDS_CSUM (5.1.6.2.1). */
  'GSO_WITHOUT_CSUM',
  /** Ethernet, IP or transport headers truncated or malformed. */
  'UNPARSEABLE_PACKET',
  /** IPv6 with extension headers: the offloads here handle a bare IPv6 header only. */
  'IPV6_EXT_HEADER',
  /** The frame's network or transport protocol is not the one gso_type names. */
  'GSO_PROTOCOL_MISMATCH',
  /** A GSO frame that is already an IPv4 fragment. */
  'GSO_IP_FRAGMENT',
  /** A TSO frame with CWR set but without the GSO_ECN bit (5.1.6.2.1). */
  'ECN_WITHOUT_GSO_ECN',
  /** The frame does not fit the engine, or a UFO datagram does not fit UDP's length field. */
  'FRAME_TOO_LONG',
  /** After the headers, the MTU leaves no room for payload (or for one fragment unit). */
  'MTU_TOO_SMALL',
] as const;

/** One of OFFLOAD_ERROR_CODES. */
export type OffloadErrorCode = (typeof OFFLOAD_ERROR_CODES)[number];
