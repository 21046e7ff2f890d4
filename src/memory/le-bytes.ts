/** Little-endian fields in a byte array (virtio's wire order, VIRTIO_F_VERSION_1). No bounds checks: callers check the extent once. */

export const getU16le = (u8: Uint8Array, at: number): number => u8[at] | (u8[at + 1] << 8);

export const getU32le = (u8: Uint8Array, at: number): number => (u8[at] | (u8[at + 1] << 8) | (u8[at + 2] << 16) | (u8[at + 3] << 24)) >>> 0;

export function putU16le(u8: Uint8Array, at: number, v: number): void {
  u8[at] = v;
  u8[at + 1] = v >>> 8;
}

export function putU32le(u8: Uint8Array, at: number, v: number): void {
  u8[at] = v;
  u8[at + 1] = v >>> 8;
  u8[at + 2] = v >>> 16;
  u8[at + 3] = v >>> 24;
}
