/**
 * `pnpm build` (and the first step of `pnpm start` / `pnpm start:axon`): bundles the entry points with esbuild into
 * `dist/` as ESM for Node 20, so the processes run under plain `node`: no tsx loader thread, transpiled modules or
 * tsx parent process in memory (the Neuron idles about 55 MiB smaller, and starts in about half the time). Packages
 * stay ordinary imports from node_modules (better-sqlite3's native module loads as usual); source maps point stack
 * traces at src/ when run with `node --enable-source-maps`. Plain JavaScript so that it runs before anything is
 * built.
 */
import * as esbuild from "esbuild"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root folder. */
export const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")

/** What `pnpm build` bundles: output name (in `dist/`) -> entry point, relative to the root. */
export const entryPoints = { main: "src/main.ts", axon: "src/registry/main.ts", neuron: "src/cli/bin.ts" }

/**
 * Bundles `entryPoints` (output name -> entry point, relative to the root) into `outdir` (relative to the root);
 * resolves with the absolute output folder.
 * The output must stay inside the repository: the bundles import packages from its node_modules.
 */
export const build = async (options = {}) => {
  const outdir = options.outdir ?? "dist"
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: options.entryPoints ?? entryPoints,
    outdir,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    sourcemap: true,
    // Class and function names as in src/ (esbuild renames clashing top-level names otherwise).
    keepNames: true,
    logLevel: "warning"
  })
  return Path.join(root, outdir)
}

if (process.argv[1] !== undefined && Path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await build()
}
