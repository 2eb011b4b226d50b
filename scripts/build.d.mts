/** Types of scripts/build.mjs, for the TypeScript that imports it (tests and benchmarks). */

/** The repository's root folder. */
export declare const root: string

/** What `pnpm build` bundles: output name (in `dist/`) -> entry point, relative to the root. */
export declare const entryPoints: Readonly<Record<string, string>>

/**
 * The SHA-256 of everything a build of `entries` (`entryPoints` by default) reads: each file under `src/`,
 * scripts/build.mjs, package.json and tsconfig.json, esbuild's version and the entry points.
 */
export declare const sourceDigest: (entries?: Readonly<Record<string, string>>) => string

/**
 * Bundles `entryPoints` (output name -> entry point, relative to the root) into `outdir` (relative to the root,
 * `dist` by default), unless it already holds them built from the current sources (`force`: build anyway);
 * resolves with the absolute output folder. Each file is renamed into place whole.
 */
export declare const build: (options?: {
  readonly entryPoints?: Readonly<Record<string, string>>
  readonly outdir?: string
  readonly force?: boolean
}) => Promise<string>
