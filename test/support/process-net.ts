/**
 * Address parts unique to this test process, so VXLAN tests running in
 * parallel (or a second CI pass) never share an underlay, overlay or VNI:
 * A and B are octets of the underlay (127.A.B.x on loopback, 10.A.B+k.0/24
 * between namespaces), C the overlay's third octet (192.168.C.0/24).
 */
const pid = process.pid;
export const A = 200 + (pid % 50);
export const B = (pid >>> 6) & 0xf0;
export const C = pid % 250;
export const VNI = 4200 + (pid % 1000);
