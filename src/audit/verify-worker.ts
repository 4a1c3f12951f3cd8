import { parentPort } from 'node:worker_threads';
import { prepareBlock } from './prepare.js';

// Prepares blocks of the log for `verifyLog`: hash checks and Merkle subtrees off the main thread.
parentPort?.on(
  'message',
  (msg: { id: number; block: ArrayBuffer; offset: number; length: number; splitAt: number[] }) => {
    const r = prepareBlock(Buffer.from(msg.block, msg.offset, msg.length), msg.splitAt);
    // The block goes back (the record-by-record path may need it); nothing is copied.
    parentPort?.postMessage({ id: msg.id, block: r }, [msg.block, r.lines.buffer as ArrayBuffer]);
  },
);
