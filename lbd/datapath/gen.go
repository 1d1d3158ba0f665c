package datapath

// The data plane is compiled with Debian 12's clang 14 against the headers
// vendored in bpf/include only (-nostdinc), for little-endian BPF (every
// architecture lbd ships for is little-endian), with -mcpu=v3 (kernel >= 5.1:
// 32-bit jumps and ALU, atomics) instead of bpf2go's default v1. CI runs
// `go generate ./...` and fails when the output differs from the committed one.
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -nostdinc -isystem ../../bpf/include" -type lb_flow -type lb_ct4_key -type lb_service_key -type lb_service -type lb_backend -type lb_ct_entry -type lb_frag_key -type lb_frag_ports -type lb_config -type lb_counters -type lb_ct_counters bpf ../../bpf/lb.c
