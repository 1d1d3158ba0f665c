package config

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// The fast decoder turns a yaml.Node tree into the wire types in one pass,
// without reflection, for the files almost everyone writes: plain keys of
// the schema, each once, and values whose decoding is unambiguous. It
// accepts a tree only when yaml.v3's own decoding (Node.Decode) and the
// walk over the tree (parser.walk) are certain to succeed with exactly the
// same values; on anything else (an unknown or repeated key, a type that
// needs converting, a tag, an anchor or alias, a merge key, a null list
// element) it gives up and the caller takes the reference path: walk,
// Decode and their messages. Giving up is always correct, only slower, so
// each rule below errs on that side.
//
// It exists because a reload of 1,000 services decoded a 3,000-server file
// twice (the walk, then yaml's reflection decoder) and allocated a field
// path string per node; see BENCHMARKS.md, "Control plane at scale".

// fastDecoder decodes one tree; off is added to every node's line (for a
// service parsed on its own, see Loader).
type fastDecoder struct{ off int }

// plain reports whether n carries no tag, anchor or alias: nothing that
// makes yaml.v3 decode it other than by its kind and resolved tag.
func plain(n *yaml.Node) bool {
	return n.Kind != yaml.AliasNode && n.Anchor == "" && n.Style&yaml.TaggedStyle == 0
}

// isNull reports whether yaml.v3 decodes n as null ("", "~", "null"
// unquoted). The parser resolved the tag of every untagged scalar already.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
}

// fields decodes the mapping n into a struct: set decodes one value and
// returns its field's index (0..31), or -1 for a key the struct does not
// have or a value it cannot decode. A repeated key gives up too.
func fields(n *yaml.Node, set func(k, v *yaml.Node) int) bool {
	if n.Kind != yaml.MappingNode || !plain(n) || len(n.Content)%2 != 0 {
		return false
	}
	var done uint32
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" || !plain(k) || !plain(v) {
			return false
		}
		f := set(k, v)
		if f < 0 || done&(1<<f) != 0 {
			return false
		}
		done |= 1 << f
	}
	return true
}

// str decodes a string field: any non-null scalar gives its text (as
// yaml.v3 does, so `name: 123` is "123"), null leaves it empty.
func str(n *yaml.Node, out *string) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	if !isNull(n) {
		*out = n.Value
	}
	return true
}

func strPtr(n *yaml.Node, out **string) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	if !isNull(n) {
		s := n.Value
		*out = &s
	}
	return true
}

// decimal parses what yaml.v3 resolves as the same int in every reading:
// an unquoted !!int written in plain decimal without sign, leading zero
// or underscore ("010" is octal to yaml.v3, "1_000" is 1000).
func decimal(n *yaml.Node) (int64, bool) {
	s := n.Value
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || isNull(n) || n.Style != 0 {
		return 0, false
	}
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

func intPtr(n *yaml.Node, out **int) bool {
	if isNull(n) {
		return true
	}
	v, ok := decimal(n)
	if ok {
		i := int(v)
		*out = &i
	}
	return ok
}

func uint32Ptr(n *yaml.Node, out **uint32) bool {
	if isNull(n) {
		return true
	}
	v, ok := decimal(n)
	if !ok || v < 0 || v > 1<<32-1 {
		return false
	}
	u := uint32(v)
	*out = &u
	return true
}

// boolPtr takes the YAML 1.2 booleans only; yaml.v3's YAML 1.1 extras
// (yes, on, ...) take the reference path.
func boolPtr(n *yaml.Node, out **bool) bool {
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Style != 0 {
		return false
	}
	var b bool
	switch n.Value {
	case "true", "True", "TRUE":
		b = true
	case "false", "False", "FALSE":
	default:
		return false
	}
	*out = &b
	return true
}

// durationPtr mirrors Duration.UnmarshalYAML, which yaml.v3 calls for
// every non-null value.
func durationPtr(n *yaml.Node, out **Duration) bool {
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.ScalarNode {
		return false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return false
	}
	d := Duration(v)
	*out = &d
	return true
}

// seq checks n is a list yaml.v3 decodes element by element (null: none).
// A null element is dropped by yaml.v3 without a word; the reference path
// keeps that.
func seq(n *yaml.Node) (items []*yaml.Node, null, ok bool) {
	if isNull(n) {
		return nil, true, true
	}
	if n.Kind != yaml.SequenceNode {
		return nil, false, false
	}
	for _, it := range n.Content {
		if !plain(it) || isNull(it) {
			return nil, false, false
		}
	}
	return n.Content, false, true
}

func ints(n *yaml.Node, out *[]int) bool {
	items, null, ok := seq(n)
	if !ok || null {
		return ok
	}
	v := make([]int, len(items))
	for i, it := range items {
		x, ok := decimal(it)
		if !ok {
			return false
		}
		v[i] = int(x)
	}
	*out = v
	return true
}

func strs(n *yaml.Node, out *[]string) bool {
	items, null, ok := seq(n)
	if !ok || null {
		return ok
	}
	v := make([]string, len(items))
	for i, it := range items {
		if !str(it, &v[i]) {
			return false
		}
	}
	*out = v
	return true
}

// ptr decodes a mapping into a new *T: null leaves it nil.
func ptr[T any](n *yaml.Node, out **T, dec func(*yaml.Node, *T) bool) bool {
	if isNull(n) {
		return true
	}
	v := new(T)
	if !dec(n, v) {
		return false
	}
	*out = v
	return true
}

func (fd fastDecoder) file(n *yaml.Node, w *wireFile) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "balancer":
			w.balancerLine = k.Line + fd.off
			ok, f = ptr(v, &w.Balancer, fd.balancer), 0
		case "services":
			ok, f = fd.services(v, &w.Services), 1
		}
		return result(ok, f)
	})
}

func result(ok bool, f int) int {
	if !ok {
		return -1
	}
	return f
}

func (fd fastDecoder) balancer(n *yaml.Node, w *wireBalancer) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "interface":
			ok, f = str(v, &w.Interface), 0
		case "maglev_table_size":
			ok, f = uint32Ptr(v, &w.MaglevTableSize), 1
		case "conntrack":
			ok, f = ptr(v, &w.Conntrack, conntrack), 2
		case "pin_path":
			ok, f = strPtr(v, &w.PinPath), 3
		case "metrics":
			ok, f = ptr(v, &w.Metrics, metrics), 4
		case "vip_owner":
			ok, f = str(v, &w.VIPOwner), 5
		case "bgp":
			ok, f = ptr(v, &w.BGP, bgpFast), 6
		case "notify":
			ok, f = ptr(v, &w.Notify, notifyFast), 7
		}
		return result(ok, f)
	})
}

func notifyFast(n *yaml.Node, w *wireNotify) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "command":
			ok, f = str(v, &w.Command), 0
		case "timeout":
			ok, f = durationPtr(v, &w.Timeout), 1
		}
		return result(ok, f)
	})
}

func conntrack(n *yaml.Node, w *wireConntrack) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "size":
			ok, f = uint32Ptr(v, &w.Size), 0
		case "tcp_timeout":
			ok, f = durationPtr(v, &w.TCPTimeout), 1
		case "udp_timeout":
			ok, f = durationPtr(v, &w.UDPTimeout), 2
		}
		return result(ok, f)
	})
}

func metrics(n *yaml.Node, w *wireMetrics) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "listen":
			ok, f = strPtr(v, &w.Listen), 0
		case "web_config":
			ok, f = strPtr(v, &w.WebConfig), 1
		}
		return result(ok, f)
	})
}

func bgpFast(n *yaml.Node, w *wireBGP) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "asn":
			ok, f = uint32Ptr(v, &w.ASN), 0
		case "router_id":
			ok, f = str(v, &w.RouterID), 1
		case "withdraw_wait":
			ok, f = durationPtr(v, &w.WithdrawWait), 2
		case "peers":
			ok, f = list(v, &w.Peers, peer), 3
		}
		return result(ok, f)
	})
}

func peer(n *yaml.Node, w *wireBGPPeer) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "address":
			ok, f = str(v, &w.Address), 0
		case "asn":
			ok, f = uint32Ptr(v, &w.ASN), 1
		case "hold_time":
			ok, f = durationPtr(v, &w.HoldTime), 2
		case "password":
			ok, f = strPtr(v, &w.Password), 3
		}
		return result(ok, f)
	})
}

// list decodes a list of mappings.
func list[T any](n *yaml.Node, out *[]T, dec func(*yaml.Node, *T) bool) bool {
	items, null, ok := seq(n)
	if !ok || null {
		return ok
	}
	v := make([]T, len(items))
	for i, it := range items {
		if !dec(it, &v[i]) {
			return false
		}
	}
	*out = v
	return true
}

func (fd fastDecoder) services(n *yaml.Node, out *[]wireService) bool {
	return list(n, out, fd.service)
}

func (fd fastDecoder) service(n *yaml.Node, w *wireService) bool {
	w.line = n.Line + fd.off
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "name":
			ok, f = str(v, &w.Name), 0
		case "vip":
			ok, f = str(v, &w.VIP), 1
		case "protocol":
			ok, f = str(v, &w.Protocol), 2
		case "ports":
			ok, f = ints(v, &w.Ports), 3
		case "balance":
			ok, f = str(v, &w.Balance), 4
		case "check":
			ok, f = ptr(v, &w.Check, check), 5
			if w.Check != nil {
				w.Check.line = k.Line + fd.off
			}
		case "servers":
			ok, f = list(v, &w.Servers, fd.server), 6
		case "announce":
			ok, f = ptr(v, &w.Announce, announce), 7
		case "fallback":
			ok, f = list(v, &w.Fallback, fd.server), 8
		case "on_failure":
			ok, f = str(v, &w.OnFailure), 9
		}
		return result(ok, f)
	})
}

func announce(n *yaml.Node, w *wireAnnounce) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "min_healthy":
			ok, f = intPtr(v, &w.MinHealthy), 0
		case "communities":
			ok, f = strs(v, &w.Communities), 1
		case "med":
			ok, f = uint32Ptr(v, &w.MED), 2
		}
		return result(ok, f)
	})
}

func check(n *yaml.Node, w *wireCheck) bool {
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "type":
			ok, f = str(v, &w.Type), 0
		case "interval":
			ok, f = durationPtr(v, &w.Interval), 1
		case "timeout":
			ok, f = durationPtr(v, &w.Timeout), 2
		case "rise":
			ok, f = intPtr(v, &w.Rise), 3
		case "fall":
			ok, f = intPtr(v, &w.Fall), 4
		case "port":
			ok, f = intPtr(v, &w.Port), 5
		case "path":
			ok, f = strPtr(v, &w.Path), 6
		case "expect_status":
			ok, f = intPtr(v, &w.ExpectStatus), 7
		case "via":
			ok, f = str(v, &w.Via), 21
		default:
			ok, f = checkTypes(k.Value, v, w)
		}
		return result(ok, f)
	})
}

func (fd fastDecoder) server(n *yaml.Node, w *wireServer) bool {
	w.line = n.Line + fd.off
	return fields(n, func(k, v *yaml.Node) int {
		ok, f := false, -1
		switch k.Value {
		case "name":
			ok, f = str(v, &w.Name), 0
		case "address":
			ok, f = str(v, &w.Address), 1
		case "weight":
			ok, f = intPtr(v, &w.Weight), 2
		case "check":
			ok, f = boolPtr(v, &w.Check), 3
		case "mac":
			ok, f = strPtr(v, &w.MAC), 4
		case "check_port":
			ok, f = intPtr(v, &w.CheckPort), 5
		case "check_address":
			ok, f = strPtr(v, &w.CheckAddress), 6
		}
		return result(ok, f)
	})
}

// checkTypes decodes the keys of the https, udp, dns and exec checks and of
// the http request (fields 8 on of wireCheck).
func checkTypes(key string, v *yaml.Node, w *wireCheck) (bool, int) {
	switch key {
	case "method":
		return strPtr(v, &w.Method), 8
	case "host":
		return strPtr(v, &w.Host), 9
	case "expect_body":
		return strPtr(v, &w.ExpectBody), 10
	case "sni":
		return strPtr(v, &w.SNI), 11
	case "ca_file":
		return strPtr(v, &w.CAFile), 12
	case "insecure_skip_verify":
		return boolPtr(v, &w.InsecureSkipVerify), 13
	case "send":
		return strPtr(v, &w.Send), 14
	case "expect":
		return strPtr(v, &w.Expect), 15
	case "query":
		return strPtr(v, &w.Query), 16
	case "query_type":
		return strPtr(v, &w.QueryType), 17
	case "expect_rcode":
		return strPtr(v, &w.ExpectRcode), 18
	case "command":
		return strPtr(v, &w.Command), 19
	case "args":
		return strs(v, &w.Args), 20
	}
	return false, -1
}
