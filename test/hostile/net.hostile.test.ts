/** Every hostile case against virtio-net (2 queue pairs and a controlq, a peer NIC as the far end). */
import { HostileDriver } from '../../src/hostile/hostile-driver.js';
import { describeHostile } from './hostile-properties.js';

describeHostile('net', 'split', () => HostileDriver.net());
describeHostile('net', 'packed', () => HostileDriver.net());
