package signature

import (
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The generated main package must stay valid Go once its two placeholders
// are filled in, and must register the function's Scale.
func TestMainTemplateRendersToValidGo(t *testing.T) {
	text, err := os.ReadFile("../../scale-build/templates/go-main.go.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	for _, placeholder := range []string{"{{SIGNATURE_IMPORT}}", "{{FUNCTION_IMPORT}}"} {
		if strings.Count(string(text), placeholder) != 1 {
			t.Fatalf("the template must hold %s exactly once", placeholder)
		}
	}
	rendered := strings.NewReplacer(
		"{{SIGNATURE_IMPORT}}", "github.com/scale-rs/scale/crates/scale-signature-http/go",
		"{{FUNCTION_IMPORT}}", "fixture/passthrough",
	).Replace(string(text))
	file, err := parser.ParseFile(token.NewFileSet(), "main.go", rendered, 0)
	if err != nil {
		t.Fatalf("rendered template: %v", err)
	}
	if file.Name.Name != "main" {
		t.Fatalf("package %s", file.Name.Name)
	}
	var imports []string
	for _, spec := range file.Imports {
		path, _ := strconv.Unquote(spec.Path.Value)
		imports = append(imports, spec.Name.Name+" "+path)
	}
	want := []string{"signature github.com/scale-rs/scale/crates/scale-signature-http/go", "scale fixture/passthrough"}
	if !slices.Equal(imports, want) {
		t.Fatalf("imports %q, want %q", imports, want)
	}
	if !strings.Contains(rendered, "signature.Register(scale.Scale)") {
		t.Fatal("the template does not register scale.Scale")
	}
}
