package pubsublock

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLayers guards the package's layers, which the compiler cannot keep
// inside one package: the transport files (conn, cluster, sentinel, crc16,
// client, config) know nothing of the lock's phases, and only lock.go
// touches the Lock's mutable state.
func TestLayers(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}, Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	pkg, err := conf.Check("github.com/pubsublock/pubsublock", fset, files, info)
	if err != nil {
		t.Fatal(err)
	}
	lock := pkg.Scope().Lookup("Lock").Type()
	phases := []string{"Lock", "hold", "attempt", "spec"}
	transport := []string{"conn.go", "cluster.go", "sentinel.go", "crc16.go", "client.go", "config.go"}
	mutable := []string{"mu", "h", "busy", "ended", "bellFreeAt"}
	for id, obj := range info.Uses {
		file := filepath.Base(fset.Position(id.Pos()).Filename)
		if tn, ok := obj.(*types.TypeName); ok && slices.Contains(phases, tn.Name()) && tn.Parent() == pkg.Scope() &&
			slices.Contains(transport, file) {
			t.Errorf("%v: %s, a transport file, uses %s", fset.Position(id.Pos()), file, tn.Name())
		}
	}
	for sel, s := range info.Selections {
		file := filepath.Base(fset.Position(sel.Pos()).Filename)
		recv := s.Recv()
		if p, ok := recv.(*types.Pointer); ok {
			recv = p.Elem()
		}
		if file != "lock.go" && s.Kind() == types.FieldVal && types.Identical(recv, lock) &&
			slices.Contains(mutable, sel.Sel.Name) {
			t.Errorf("%v: %s touches Lock.%s; only lock.go may", fset.Position(sel.Pos()), file, sel.Sel.Name)
		}
	}
}
