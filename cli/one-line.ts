/** Commander's multi-line errors ("unknown command 'x'\n(Did you mean …?)") as one line. */
export function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' ');
}
