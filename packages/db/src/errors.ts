/** Thrown when a referenced row does not exist (maps to HTTP 404). */
export class NotFoundError extends Error {
  constructor(
    readonly entity: string,
    readonly id: string,
  ) {
    super(`${entity} ${id} not found`);
    this.name = 'NotFoundError';
  }
}

/** Thrown for input the database would reject, before anything is written. */
export class InvalidInputError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'InvalidInputError';
  }
}
