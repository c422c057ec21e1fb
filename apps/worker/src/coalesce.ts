// Sends only the latest of a fast stream of values (job progress), one call in
// flight at a time: a trainer stepping every few milliseconds must not queue
// thousands of Redis writes, nor wait for any while Redis reconnects.
export class Coalescer<T> {
  private latest: { value: T } | null = null;
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly send: (value: T) => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  push(value: T): void {
    this.latest = { value };
    if (!this.inFlight) this.inFlight = this.drain();
  }

  /** Resolves once the latest value has been sent (or failed). */
  async settle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private async drain(): Promise<void> {
    while (this.latest) {
      const { value } = this.latest;
      this.latest = null;
      try {
        await this.send(value);
      } catch (err) {
        this.onError(err);
      }
    }
    this.inFlight = null;
  }
}
