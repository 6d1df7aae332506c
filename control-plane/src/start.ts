// The control plane's entry point: `node control-plane/dist/start.js` (scripts/start.sh,
// the image's CMD, deploy/). It holds V8's young generation before any other
// module is loaded, then runs main.ts.
//
// Why a module of its own: node loads and links every module of a static import
// graph before it evaluates the first one, and loading main.ts's graph (fastify,
// Prisma, gRPC, protobufjs: thousands of objects that all survive) grew the young
// generation from 1 to 8 MiB before quiet-collector.ts could hold it, and an idle
// process kept that until V8's memory reducer shrank it ~20 s later (issue 12:
// idle RSS 3 s after start). Here only quiet-collector.ts (and two node builtins)
// loads first; main.ts's graph loads after the hold, by a dynamic import. (It
// also keeps WebAssembly on its baseline compiler before Prisma compiles its
// query compiler: wasmBaselineOnly() there says why.)
import './quiet-collector.ts'; // evaluating it holds the young generation and keeps Wasm on its baseline tier

await import('./main.ts');
