// The version the CLI, the API and the logs report; one place, and cheap to import.
export const VERSION = '0.1.0';
