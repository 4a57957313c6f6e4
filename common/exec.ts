// execa, loaded at its first use: an idle crispd runs no command, and execa with its dependencies is
// ~100 modules and ~2.5 MiB of resident memory (bench/README.md, "Where the memory goes").
import type { Options, ResultPromise } from 'execa';

let loading: Promise<typeof import('execa')> | undefined;

/** execa(file, args, options) as execa runs it; the module loads on the first call. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export async function execa<O extends Options = {}>(file: string, args: readonly string[], options?: O): Promise<Awaited<ResultPromise<{} & O>>> {
  loading ??= import('execa');
  const { execa: run } = await loading;
  return await run<O>(file, args, options);
}
