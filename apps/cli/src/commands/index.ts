// Each command registers itself on import.
import './version.js';
