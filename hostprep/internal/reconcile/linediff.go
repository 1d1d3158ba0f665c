package reconcile

import (
	"fmt"
	"strings"
)

// lineDiff shows how to turn have into want: "-" lines to drop, "+" lines
// to add, each with its line number, unchanged lines left out. Files are a
// few dozen lines, so the quadratic longest-common-subsequence is fine.
func lineDiff(have, want []byte) string {
	a := strings.Split(strings.TrimSuffix(string(have), "\n"), "\n")
	b := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+%d: %s\n", j+1, b[j])
			j++
		default:
			fmt.Fprintf(&out, "-%d: %s\n", i+1, a[i])
			i++
		}
	}
	return out.String()
}
