/** Types of scripts/build.mjs, for the TypeScript that imports it (tests and benchmarks). */

/** The repository's root folder. */
export declare const root: string

/** What `pnpm build` bundles: output name (in `dist/`) -> entry point, relative to the root. */
export declare const entryPoints: Readonly<Record<string, string>>

/**
 * Bundles `entryPoints` (output name -> entry point, relative to the root) into `outdir` (relative to the root,
 * `dist` by default); resolves with the absolute output folder.
 */
export declare const build: (options?: {
  readonly entryPoints?: Readonly<Record<string, string>>
  readonly outdir?: string
}) => Promise<string>
