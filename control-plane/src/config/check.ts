// `node --import tsx control-plane/src/config/check.ts`: validates the environment
// the way the control plane would at startup, without starting anything.
import { configOrExit } from './env.ts';

configOrExit();
process.stdout.write('config ok\n');
