// Set when SIGINT/SIGTERM arrived: teardown has begun and no results may be written.
let flag = false;

export function markInterrupted(): void {
  flag = true;
}

export function interrupted(): boolean {
  return flag;
}
