package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/maglev"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/lbd/vip"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// openPinned opens the data plane pinned for cfg read-only: status and
// explain must read what runs, never start, write or attach anything.
func openPinned(cfg *config.Config) (*datapath.Reader, error) {
	pin := cfg.Balancer.PinPath
	r, err := datapath.OpenReadOnly(pin)
	if errors.Is(err, datapath.ErrNotPinned) {
		return nil, &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("no data plane pinned at %s: lbd has not run with this configuration (or was detached)", pin)}
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("read data plane pinned at %s: permission denied: reading the pinned maps needs root (CAP_BPF and access to %s)", pin, pin)}
	}
	if err != nil {
		return nil, &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("open data plane pinned at %s: %w", pin, err)}
	}
	return r, nil
}

// loadPinned loads the configuration and opens the data plane it names.
func loadPinned(cfgPath string) (*config.Config, *datapath.Reader, error) {
	cfg, err := cmdutil.LoadConfig(nil, cfgPath, (*config.Config).RequireBalancer)
	if err != nil {
		return nil, nil, err
	}
	dp, err := openPinned(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, dp, nil
}

func newStatusCmd(cfgPath *string) *cobra.Command {
	var (
		asJSON bool
		rate   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show services, backends, states, MACs and counters (works while lbd is down)",
		Long: `status reads the pinned data plane: what it shows is what the kernel forwards,
whether or not lbd is running. It opens the maps read-only and changes nothing.
The first line says whether an lbd owns the data plane; when none does, backend
states are the last ones it wrote. A program found detached and VIPs not taken
because another host answers for them are reported before the table. Counters
are summed over CPUs since the maps were created; --rate reads them twice, an
interval apart, and shows per-second packets, bytes and new flows instead (as
ipvsadm --rate). REASON says why a backend is not up. LAST CHANGE says how long
ago the backend's state or reason last changed, as the running lbd knows it
(asked over its control socket; "-" when lbd is down, the maps keep no time).
The ARP guard's findings (another MAC answering for a VIP, the backend named when
it is one) come from the running lbd too. --json prints the versioned schema of
docs/status-json.md.`,
		Example: `  lbd status
  lbd status --rate            # per second, over 1s
  lbd status --rate=5s --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, dp, err := loadPinned(*cfgPath)
			if err != nil {
				return err
			}
			defer dp.Close()
			var before []statusjson.Service
			if rate > 0 {
				st0, err := dp.Stats()
				if err != nil {
					return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("read data plane counters: %w", err)}
				}
				nameStats(cfg, &st0)
				before = daemon.StatusServices(cfg, st0)
				select {
				case <-time.After(rate):
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				}
			}
			st, err := dp.Stats()
			if err != nil {
				return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("read data plane counters: %w", err)}
			}
			nameStats(cfg, &st)
			if err := dp.ActiveFlows(&st); err != nil {
				return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("count active flows: %w", err)}
			}
			ct, err := dp.ConntrackStats()
			if err != nil {
				return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("read conntrack counters: %w", err)}
			}
			bs := readBGPStatus(cfg)
			d := daemonState(cfg.Balancer.PinPath)
			attachErr := dp.Attachment(cfg.Balancer.Interface)
			if attachErr != nil {
				d.NotAttached = attachErr.Error()
			}
			doc := statusDoc(cfg, st, ct, bs, d) // statusjson.go
			if d.Running {
				addLive(&doc, askLive(cmd.Context(), controlSocket(cfg.Balancer.PinPath))) // livestate.go
			}
			if rate > 0 {
				addRates(&doc, before, rate)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			printDaemon(cmd.OutOrStdout(), d)
			printARPGuard(cmd.OutOrStdout(), doc.ARPGuard, d.Running)
			printStatus(cmd.OutOrStdout(), doc, st)
			fmt.Fprintf(cmd.OutOrStdout(), "\nconntrack: %d entries; since created: %d inserted, %d renewed, %d expired and deleted, %d evicted (LRU, estimated)\n",
				ct.Entries, ct.Inserted, ct.Renewed, ct.Dropped, ct.Evicted)
			printBGP(cmd.OutOrStdout(), cfg, bs)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON in the versioned schema of docs/status-json.md")
	cmd.Flags().DurationVar(&rate, "rate", 0, "show per-second rates measured over this interval (--rate alone: 1s)")
	cmd.Flags().Lookup("rate").NoOptDefVal = "1s"
	return cmd
}

// printStatus prints a table in the spirit of `ipvsadm -Ln --stats` (or
// --rate, when the document has rates).
func printStatus(out io.Writer, doc statusjson.Status, st datapath.Stats) {
	fmt.Fprintf(out, "data plane on %s, pinned at %s\n", doc.Interface, doc.PinPath)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	rates := doc.RateInterval > 0
	if rates {
		fmt.Fprintf(w, "SERVICE\tVIP:PORTS\tPROTO\tSCHED\tSTATE\tLAST CHANGE\tWEIGHT\tMAC\tACTIVE\tINACTIVE\tFLOWS/S\tPKTS/S\tBYTES/S\tREASON\n")
	} else {
		fmt.Fprintln(w, "SERVICE\tVIP:PORTS\tPROTO\tSCHED\tSTATE\tLAST CHANGE\tWEIGHT\tMAC\tACTIVE\tINACTIVE\tNEWFLOWS\tPACKETS\tBYTES\tREASON")
	}
	figures := func(c statusjson.Counters, r *statusjson.Rates) string {
		if !rates {
			return fmt.Sprintf("%d\t%d\t%d", c.NewFlows, c.Packets, c.Bytes)
		}
		if r == nil {
			r = &statusjson.Rates{}
		}
		return fmt.Sprintf("%.1f\t%.1f\t%.0f", r.NewFlows, r.Packets, r.Bytes)
	}
	var notes []string
	for i, s := range doc.Services {
		vip := s.VIP
		if i < len(st.Services) {
			vip = addrText(st.Services[i].VIP)
		}
		fmt.Fprintf(w, "%s\t%s:%s\t%s\t%s\t\t\t\t\t%d\t%d\t%s\t\n", s.Name, vip, statusjson.PortsText(s.Ports), s.Protocol, s.Scheduler,
			s.ActiveFlows, s.InactiveFlows, figures(s.Counters, s.Rates))
		for _, b := range s.Backends {
			name, state := backendText(b) // set.go
			fmt.Fprintf(w, "  -> %s\t%s\t\t\t%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", name, b.Address, state, sinceText(b.StateSince, doc.Generated), b.Weight, b.MAC,
				b.ActiveFlows, b.InactiveFlows, figures(b.Counters, b.Rates), b.StateReason)
		}
		if s.FallbackActive {
			notes = append(notes, s.Name+": fallback active: no primary server takes new flows; the fallback servers do")
		}
		if s.Counters.NoBackend > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d packets passed to the host for lack of a usable backend", s.Name, s.Counters.NoBackend))
		}
	}
	w.Flush()
	if rates {
		fmt.Fprintf(out, "rates per second over %s\n", time.Duration(doc.RateInterval*float64(time.Second)).Round(time.Millisecond))
	}
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	fmt.Fprintln(out, "\nverdicts (packets):")
	for _, r := range datapath.Reasons() {
		if c := st.Reasons[r]; c.Packets > 0 {
			fmt.Fprintf(out, "  %-22s %d\n", r, c.Packets)
		}
	}
}

func addrText(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func newExplainCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "explain PROTO SRC:PORT DST:PORT",
		Short: "Tell which backend a flow goes to and why (conntrack entry or table slot)",
		Example: `  lbd explain tcp 198.51.100.7:51234 192.0.2.10:443
  lbd explain udp [2001:db8::7]:5353 [2001:db8::10]:53`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			flow, err := parseFlow(args)
			if err != nil {
				return err
			}
			cfg, dp, err := loadPinned(*cfgPath)
			if err != nil {
				return err
			}
			defer dp.Close()
			info, err := dp.LookupFlow(flow)
			if err != nil {
				return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("look up flow: %w", err)}
			}
			if info.Service != "" {
				nameFlow(cfg, flow, &info)
			}
			out := cmd.OutOrStdout()
			switch {
			case info.Service == "":
				fmt.Fprintf(out, "%s %s -> %s: %s\n", args[0], args[1], args[2], info.Why)
			case info.Backend == "":
				fmt.Fprintf(out, "%s %s -> %s: service %s: %s\n", args[0], args[1], args[2], info.Service, info.Why)
			default:
				fmt.Fprintf(out, "%s %s -> %s: service %s, backend %s (%s): %s\n", args[0], args[1], args[2], info.Service, info.Backend, info.Addr, info.Why)
			}
			return nil
		},
	}
}

func parseFlow(args []string) (datapath.Flow, error) {
	var f datapath.Flow
	switch strings.ToLower(args[0]) {
	case "tcp":
		f.Proto = datapath.TCP
	case "udp":
		f.Proto = datapath.UDP
	default:
		return f, &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("protocol %q: give tcp or udp", args[0])}
	}
	var err error
	if f.Src, err = netip.ParseAddrPort(args[1]); err != nil {
		return f, &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("client %q: give ADDR:PORT, e.g. 198.51.100.7:51234 or [2001:db8::7]:51234", args[1])}
	}
	if f.Dst, err = netip.ParseAddrPort(args[2]); err != nil {
		return f, &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("destination %q: give VIP:PORT, e.g. 192.0.2.10:443", args[2])}
	}
	f.Src = netip.AddrPortFrom(f.Src.Addr().Unmap(), f.Src.Port())
	f.Dst = netip.AddrPortFrom(f.Dst.Addr().Unmap(), f.Dst.Port())
	return f, nil
}

func newDetachCmd(cfgPath *string) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "detach",
		Short: "Remove the data plane for good: program, pinned maps and the VIPs lbd added",
		Long: `detach stops forwarding: it detaches the program from the interface, removes
the pinned maps and link, and releases the VIPs lbd added (only those: addresses
added by hand stay). Stop lbd first: while an lbd runs on the pin path, detach
refuses (--force detaches anyway, leaving that lbd running without a data
plane). Running it twice is harmless. A broken or missing configuration falls
back to the default pin path.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return detach(cmd.OutOrStdout(), *cfgPath, force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "detach even while lbd runs: it keeps running with no data plane (health checks and reloads change nothing) until restarted")
	return cmd
}

func detach(out io.Writer, cfgPath string, force bool) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(out, "configuration unreadable (%v); using the default pin path %s\n", firstLine(err), config.DefaultPinPath)
		cfg = &config.Config{Balancer: config.Balancer{PinPath: config.DefaultPinPath}}
	}
	pin := cfg.Balancer.PinPath
	// Hold the lock while detaching, so no lbd starts on a half-removed
	// data plane; refuse while one runs.
	if lock, err := lockPinDir(pin); err == nil {
		defer lock.release()
	} else if ar, ok := errors.AsType[*alreadyRunning](err); ok {
		if !force {
			return &cmdutil.ExitError{Code: 1, Plain: true, Err: fmt.Errorf("%v: stop it first (systemctl stop lbd, or kill %d), or use --force to detach anyway and leave it running with no data plane", ar, ar.pid)}
		}
		fmt.Fprintf(out, "%v: detaching anyway (--force); it keeps running with no data plane until it is restarted\n", ar)
	}
	record, _ := daemon.ReadVIPRecord(vipsFile(pin))
	var errs []error
	// lbd's files under /run describe the pinned data plane (the running
	// configuration, the last BGP status; a killed lbd also leaves its PID
	// file): they go with it.
	for _, f := range []string{bgpStatusPath(pin), runningConfigPath(pin), pidFile(pin), seenFile(pin), vipsFile(pin), daemon.AdminFile(controlSocket(pin)), reasonsFile(pin)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
		}
	}
	if _, err := os.Stat(cfg.Balancer.PinPath); err == nil {
		ifname := cfg.Balancer.Interface
		if _, err := net.InterfaceByName(ifname); err != nil {
			ifname = "" // gone or renamed: look for the cls_bpf filter everywhere
		}
		opts := daemon.DataplaneOptions(cfg.Balancer) // the maps lbd run made, adopted as they are
		opts.Interface, opts.ReplaceIncompatible = ifname, true
		dp, err := datapath.Open(opts, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned data plane: %w", err))
		} else {
			if err := dp.Detach(); err != nil {
				errs = append(errs, fmt.Errorf("detach program: %w", err))
			}
			if err := dp.Remove(); err != nil {
				errs = append(errs, fmt.Errorf("remove pins: %w", err))
			} else {
				fmt.Fprintf(out, "data plane detached, %s removed\n", cfg.Balancer.PinPath)
			}
		}
	} else {
		fmt.Fprintf(out, "no data plane pinned at %s\n", cfg.Balancer.PinPath)
	}
	ifnames := []string{cfg.Balancer.Interface}
	switch {
	case cfg.Balancer.Interface == "" && record.Interface != "":
		ifnames = []string{record.Interface}
	case cfg.Balancer.Interface == "":
		ifnames = allInterfaces() // configuration lost: lbd's VIPs carry its mark wherever they are
	}
	for _, ifname := range ifnames {
		owned, err := vip.Owned(ifname)
		if err == nil && ifname == record.Interface {
			// What this instance recorded adding: the only record on
			// kernels without IFA_PROTO.
			owned = mergeAddrs(owned, record.Added)
		}
		switch {
		case err != nil:
			fmt.Fprintf(out, "no VIPs released on %s: %v\n", ifname, err)
		case len(owned) > 0:
			if err := vip.ReleaseAdded(ifname, owned, slog.New(slog.DiscardHandler)); err != nil {
				errs = append(errs, fmt.Errorf("release VIPs on %s: %w", ifname, err))
			} else {
				fmt.Fprintf(out, "released VIPs %v on %s\n", owned, ifname)
			}
		}
	}
	if len(errs) > 0 {
		return &cmdutil.ExitError{Code: 1, Err: errors.Join(errs...)}
	}
	return nil
}

func mergeAddrs(a, b []netip.Addr) []netip.Addr {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// previewReload prints, per service, the share of Maglev slots that would
// change owner if cfg replaced the running configuration, all backends
// assumed healthy. The running configuration is the copy lbd keeps under
// /run/dsrlb; without it every slot counts as new.
func previewReload(out io.Writer, next *config.Config) error {
	var cur *config.Config
	if c, err := config.Load(runningConfigPath(next.Balancer.PinPath)); err == nil {
		cur = c
	} else {
		fmt.Fprintf(out, "no running configuration found (%s): comparing with an empty one\n", firstLine(err))
	}
	fmt.Fprintf(out, "%s: configuration valid; nothing was changed (dry run)\n", next.File)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tCHANGE\tSLOTS MOVED")
	for _, s := range next.Services {
		old := findService(cur, s.Name)
		change, moved := "new", 1.0
		if old != nil {
			change, moved = "changed", movedShare(old, &s, next.Balancer.MaglevTableSize)
			if moved == 0 {
				change = "unchanged"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%.2f%%\n", s.Name, change, moved*100)
	}
	if cur != nil {
		for _, s := range cur.Services {
			if findService(next, s.Name) == nil {
				fmt.Fprintf(w, "%s\tremoved\t100.00%%\n", s.Name)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return printRestartOnly(out, cur, next) // reload.go
}

func findService(cfg *config.Config, name string) *config.Service {
	if cfg == nil {
		return nil
	}
	for i := range cfg.Services {
		if cfg.Services[i].Name == name {
			return &cfg.Services[i]
		}
	}
	return nil
}

// movedShare compares the Maglev tables of two versions of a service, each
// sized as the data plane sizes it (maglev.TableSize, bounded by limit).
// Tables of one size are compared slot by slot; when the size changed, a
// flow hashing to h reads slot h mod size of each, so the share is
// measured over a fixed sample of hashes.
func movedShare(a, b *config.Service, limit uint32) float64 {
	ta, ka := table(a, maglev.TableSize(len(a.Servers), limit))
	tb, kb := table(b, maglev.TableSize(len(b.Servers), limit))
	if ta == nil || tb == nil {
		if ta == nil && tb == nil {
			return 0
		}
		return 1
	}
	if len(ta) != len(tb) {
		const samples = 200000
		moved := 0
		for i := uint32(0); i < samples; i++ {
			h := i * 2654435761 // spread over 32 bits, as the flow hash is
			if ka[ta[h%uint32(len(ta))]] != kb[tb[h%uint32(len(tb))]] {
				moved++
			}
		}
		return float64(moved) / samples
	}
	moved := 0
	for i := range ta {
		if ka[ta[i]] != kb[tb[i]] {
			moved++
		}
	}
	return float64(moved) / float64(len(ta))
}

func table(s *config.Service, size uint32) ([]uint32, []string) {
	var bs []maglev.Backend
	for _, srv := range s.Servers {
		if srv.Fallback {
			continue // standing by while the primaries are up, as the preview assumes
		}
		bs = append(bs, maglev.Backend{Key: srv.Address.String(), Weight: srv.Weight})
	}
	t, err := maglev.Build(bs, size)
	if err != nil {
		return nil, nil
	}
	keys := make([]string, len(bs))
	for i, b := range bs {
		keys[i] = b.Key
	}
	return t, keys
}

// nameStats puts the configuration's names on what the maps hold (see
// daemon.Identity: names live only in the configuration).
func nameStats(cfg *config.Config, st *datapath.Stats) {
	id := daemon.IdentityOf(cfg)
	for i := range st.Services {
		s := &st.Services[i]
		cs := id.Service(s.VIP, s.Proto, s.Ports)
		if cs == nil {
			continue
		}
		s.Name = cs.Name
		for j := range s.Backends {
			if srv := daemon.Server(cs, s.Backends[j].Addr); srv != nil {
				s.Backends[j].Name, s.Backends[j].Weight = srv.Name, srv.Weight
			}
		}
	}
}

// nameFlow replaces map-derived names in a lookup with configured ones.
func nameFlow(cfg *config.Config, f datapath.Flow, info *datapath.FlowInfo) {
	cs := daemon.IdentityOf(cfg).ServiceFor(f.Proto, f.Dst)
	if cs == nil {
		return
	}
	info.Service = cs.Name
	if srv := daemon.Server(cs, info.Addr); srv != nil && info.Backend != "" {
		info.Backend = srv.Name
	}
}

func allInterfaces() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return names
}
