package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The planner and projections are the pure core (DESIGN.md, STYLE.md
// points 1-3): values in, values out; no I/O, no clock, no randomness, no
// goroutines. These tests hold them to it, in the manner of pebble's
// TestForbiddenImports, at four levels:
//
//  1. their own imports are on an allowlist;
//  2. their transitive imports reach no client, network, process or
//     storage code, journal's own machinery set aside (3 checks that);
//  3. what they use of the journal package is its value types and their
//     encoding, never the Pebble log or the NATS outbox;
//  4. their source calls no clock, no random source and starts no
//     goroutine.
//
// NB: net/http, math/rand, crypto/rand and time are in their transitive
// imports whatever we do: k8s.io/apimachinery's metav1 and intstr import
// them (for its HTTP helpers and fuzzers). Hence level 4, which scans the
// code itself. Nondeterministic map iteration is not found by a scan; the
// world plans every state twice and from a fresh fold, and TestSimulation
// runs every seed twice and compares the journals byte for byte, which
// catches it in practice.

var purePackages = []string{"rollbook.dev/rollbook/planner", "rollbook.dev/rollbook/projections"}

// allowedImports are the direct imports the pure packages may have.
var allowedImports = map[string]string{
	"cmp":                                  "",
	"container/heap":                       "",
	"crypto/sha256":                        "hashes for revisions and trace IDs",
	"encoding/hex":                         "hashes for revisions and trace IDs",
	"encoding/json":                        "rollout spec and status, the state annotation",
	"errors":                               "",
	"fmt":                                  "",
	"iter":                                 "a pod state yields its containers: sequence types only",
	"maps":                                 "",
	"slices":                               "",
	"sort":                                 "",
	"strconv":                              "",
	"strings":                              "",
	"unique":                               "the claims hold a handle of a rollout's key: interning, no observable state",
	"time":                                 "only to convert journaled Unix times to metav1.Time (checked by TestPureSource)",
	"k8s.io/apimachinery/pkg/api/resource": "quantities",
	"k8s.io/apimachinery/pkg/apis/meta/v1": "conditions, label selectors",
	"k8s.io/apimachinery/pkg/labels":       "label selectors",
	"k8s.io/apimachinery/pkg/util/intstr":  "int-or-percent fields",
	"rollbook.dev/rollbook/journal":        "record types (TestPureJournalUse checks which)",
	"rollbook.dev/rollbook/projections":    "",
}

// forbiddenDeps may not be reached at all (journal set aside), with why.
var forbiddenDeps = map[string]string{
	"k8s.io/client-go":                   "client-go transports: the planner talks to no apiserver",
	"os/exec":                            "no processes",
	"github.com/cockroachdb/pebble":      "no storage: records come in as values",
	"github.com/nats-io":                 "no messaging",
	"go.opentelemetry.io":                "no tracing side effects",
	"rollbook.dev/rollbook/actuator":     "the actuator calls the planner, never the reverse",
	"rollbook.dev/rollbook/ingest":       "ingest feeds the journal, not the planner",
	"rollbook.dev/rollbook/tracing":      "tracing observes; it does not decide",
	"k8s.io/apimachinery/pkg/util/wait":  "polling loops",
	"k8s.io/apimachinery/pkg/util/clock": "clocks",
	"k8s.io/utils/clock":                 "clocks",
}

type listedPackage struct {
	ImportPath string
	Imports    []string
	GoFiles    []string
	Dir        string
}

func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	if testing.Short() {
		t.Skip("runs go list")
	}
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestPureImports(t *testing.T) {
	for _, p := range goList(t, purePackages...) {
		for _, imp := range p.Imports {
			if _, ok := allowedImports[imp]; !ok {
				t.Errorf("%s imports %s, which is not on the allowlist of the pure core (DESIGN.md: the planner and projections do no I/O, read no clock, use no randomness, start no goroutines); "+
					"if it is pure, add it to allowedImports with the reason", p.ImportPath, imp)
			}
		}
	}
}

func TestPureDeps(t *testing.T) {
	pkgs := goList(t, append([]string{"-deps"}, purePackages...)...)
	imports := map[string][]string{}
	for _, p := range pkgs {
		imports[p.ImportPath] = p.Imports
	}
	// Walk the import graph from the pure packages, not into journal (its
	// log and outbox import Pebble and NATS; TestPureJournalUse checks the
	// planner uses none of that), remembering a path to each package.
	from := map[string]string{}
	queue := slices.Clone(purePackages)
	for _, p := range purePackages {
		from[p] = ""
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == "rollbook.dev/rollbook/journal" {
			continue
		}
		for _, imp := range imports[p] {
			if _, seen := from[imp]; !seen {
				from[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	var reached []string
	for p := range from {
		reached = append(reached, p)
	}
	sort.Strings(reached)
	for _, p := range reached {
		for prefix, why := range forbiddenDeps {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				chain := []string{p}
				for at := from[p]; at != ""; at = from[at] {
					chain = append(chain, at)
				}
				t.Errorf("%s is reachable (%s): %s", p, strings.Join(chain, " <- "), why)
			}
		}
	}
}

// journalValueFiles are the journal files that hold record types and their
// encoding: all the pure core may use of the journal package. identity.go
// holds the values a UID and a resourceVersion are kept as (no state, no
// I/O).
var journalValueFiles = []string{"record.go", "observed.go", "action.go", "encoding.go", "errors.go", "identity.go"}

func TestPureJournalUse(t *testing.T) {
	pkgs := goList(t, append([]string{"rollbook.dev/rollbook/journal"}, purePackages...)...)
	declaredIn := map[string]string{} // journal identifier → file
	fset := token.NewFileSet()
	for _, p := range pkgs {
		if p.ImportPath != "rollbook.dev/rollbook/journal" {
			continue
		}
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if d.Recv == nil {
						declaredIn[d.Name.Name] = name
					}
				case *ast.GenDecl:
					for _, s := range d.Specs {
						switch s := s.(type) {
						case *ast.TypeSpec:
							declaredIn[s.Name.Name] = name
						case *ast.ValueSpec:
							for _, n := range s.Names {
								declaredIn[n.Name] = name
							}
						}
					}
				}
			}
		}
	}
	for _, p := range pkgs {
		if p.ImportPath == "rollbook.dev/rollbook/journal" {
			continue
		}
		for _, name := range p.GoFiles {
			path := filepath.Join(p.Dir, name)
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			local := importName(f, "rollbook.dev/rollbook/journal", "journal")
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == local {
					file := declaredIn[sel.Sel.Name]
					if !slices.Contains(journalValueFiles, file) {
						t.Errorf("%s: uses journal.%s (declared in journal/%s): the pure core may use only the journal's record types and encoding (%s)",
							fset.Position(sel.Pos()), sel.Sel.Name, file, strings.Join(journalValueFiles, ", "))
					}
				}
				return true
			})
		}
	}
}

// importName is the name a file refers to an import path by, "" if it does
// not import it.
func importName(f *ast.File, path, def string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return def
		}
	}
	return ""
}

// forbiddenCalls are package members the pure core must not touch: they
// read a clock or wait for one.
var forbiddenCalls = map[string][]string{
	"time": {"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"},
}

// randomPackages may not even be imported by name.
var randomPackages = []string{"math/rand", "math/rand/v2", "crypto/rand"}

func TestPureSource(t *testing.T) {
	fset := token.NewFileSet()
	for _, p := range goList(t, purePackages...) {
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range impurities(fset, f) {
				t.Error(problem)
			}
		}
	}
}

// impurities scans one file for what the pure core must not do.
func impurities(fset *token.FileSet, f *ast.File) []string {
	var out []string
	for _, imp := range f.Imports {
		if ip, _ := strconv.Unquote(imp.Path.Value); slices.Contains(randomPackages, ip) {
			out = append(out, fmt.Sprintf("%s: imports %s: randomness must come in through records, never be drawn", fset.Position(imp.Pos()), ip))
		}
	}
	names := map[string]string{} // local name → import path, for forbiddenCalls
	for ip := range forbiddenCalls {
		if n := importName(f, ip, filepath.Base(ip)); n != "" {
			names[n] = ip
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			out = append(out, fmt.Sprintf("%s: go statement: the pure core starts no goroutines (the loop in cmd does)", fset.Position(n.Pos())))
		case *ast.SelectStmt:
			out = append(out, fmt.Sprintf("%s: select statement: the pure core waits on nothing", fset.Position(n.Pos())))
		case *ast.ChanType:
			out = append(out, fmt.Sprintf("%s: channel type: the pure core shares no channels", fset.Position(n.Pos())))
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok {
				if ip, ok := names[id.Name]; ok && slices.Contains(forbiddenCalls[ip], n.Sel.Name) {
					out = append(out, fmt.Sprintf("%s: %s.%s reads or waits for a clock: time comes only from Tick records (State.Now)", fset.Position(n.Pos()), ip, n.Sel.Name))
				}
			}
		}
		return true
	})
	return out
}

// TestPureSourceCatches makes sure the scan sees what it looks for, on a
// file written to break every rule (the clock imported under another name).
func TestPureSourceCatches(t *testing.T) {
	src := `package bad

import (
	"math/rand"
	clock "time"
)

func f() {
	go func() {}()
	_ = clock.Now()
	_ = clock.Unix(0, 0) // conversion: allowed
	_ = rand.Int()
	var c chan int
	select {
	case <-c:
	}
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "bad.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := impurities(fset, f)
	want := []string{
		"bad.go:4:2: imports math/rand",
		"bad.go:9:2: go statement",
		"bad.go:10:6: time.Now reads or waits for a clock",
		"bad.go:13:8: channel type",
		"bad.go:14:2: select statement",
	}
	if len(got) != len(want) {
		t.Fatalf("found %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %q, want it to start with %q", i, got[i], want[i])
		}
	}
}
