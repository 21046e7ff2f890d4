/** Ring layout numbers (virtio 1.2 sections 2.7 split and 2.8 packed). */

/** Largest queue size a split ring may have (2.7: "Queue Size ... maximum 32768"). */
export const MAX_QUEUE_SIZE = 32768;

// Descriptor flags (2.7.5).
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;

// Packed descriptor flags (2.8.1).
export const VIRTQ_DESC_F_AVAIL = 1 << 7;
export const VIRTQ_DESC_F_USED = 1 << 15;

/** avail.flags: the driver does not want interrupts (2.7.7). Advisory only. */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device does not want kicks (2.7.10). Advisory only. */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

// Packed event suppression flags (2.8.10).
export const RING_EVENT_FLAGS_ENABLE = 0;
export const RING_EVENT_FLAGS_DISABLE = 1;
export const RING_EVENT_FLAGS_DESC = 2;

/** Size of one descriptor, split or packed: le64 addr, le32 len, le16 flags/id, le16 next/flags. */
export const DESC_SIZE = 16;

// Alignments of the three split-ring areas (2.7, table "Virtqueue Part Alignment").
export const SPLIT_DESC_ALIGN = 16;
export const SPLIT_AVAIL_ALIGN = 2;
export const SPLIT_USED_ALIGN = 4;
// Packed ring: descriptor ring 16, event suppression structures 4 (2.8.10.1).
export const PACKED_DESC_ALIGN = 16;
export const PACKED_EVENT_ALIGN = 4;
export const PACKED_EVENT_SIZE = 4;

/** Bytes of the split descriptor table for `size` entries. */
export const splitDescBytes = (size: number): number => DESC_SIZE * size;
/** Bytes of the avail ring: flags, idx, ring[size], used_event (2.7.6). */
export const splitAvailBytes = (size: number): number => 6 + 2 * size;
/** Bytes of the used ring: flags, idx, ring[size] of {le32 id, le32 len}, avail_event (2.7.8). */
export const splitUsedBytes = (size: number): number => 6 + 8 * size;
