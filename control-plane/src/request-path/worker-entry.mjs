// The worker thread's first module. The control plane runs its TypeScript through
// tsx (`node --import tsx`), and a worker does not inherit that loader, so it
// registers tsx for itself before loading worker.ts.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
