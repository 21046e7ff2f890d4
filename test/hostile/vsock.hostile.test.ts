/** Every hostile case against virtio-vsock (our VsockHost as the host side, an echo listener as the other connection). */
import { HostileDriver } from '../../src/hostile/hostile-driver.js';
import { describeHostile } from './hostile-properties.js';

describeHostile('vsock', 'split', async () => HostileDriver.vsock());
describeHostile('vsock', 'packed', async () => HostileDriver.vsock());
