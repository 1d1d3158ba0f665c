// Package prime tells whether a table size is prime: Maglev tables
// (lbd/maglev) must be, and the configuration (shared/config) checks
// maglev_table_size with the same test. It lives below both so shared/
// never imports lbd/.
package prime

// Is reports whether n is prime.
func Is(n uint32) bool {
	if n < 2 {
		return false
	}
	for d := uint32(2); uint64(d)*uint64(d) <= uint64(n); d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
