// Package benchdoc puts benchmark figures where readers find them: a
// benchmark hands it a Markdown table for its own section of BENCHMARKS.md
// and series for SVG plots in plots/ next to that file (gonum.org/v1/plot).
// It writes only when REMORA_BENCH_WRITE=1, so an ordinary benchmark run
// changes no file; otherwise it logs what it would have written.
//
// A section is the text between <!-- bench:NAME --> and <!-- /bench:NAME -->;
// writing replaces it, or appends it at the end of the file the first time.
package benchdoc

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// EnvWrite turns writing on.
const EnvWrite = "REMORA_BENCH_WRITE"

// Enabled reports whether figures are written.
func Enabled() bool { return os.Getenv(EnvWrite) == "1" }

// root is the module's directory: the nearest parent with go.mod.
func root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("benchdoc: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Section replaces section name of BENCHMARKS.md with markdown.
func Section(t testing.TB, name, markdown string) {
	t.Helper()
	if !Enabled() {
		t.Logf("benchdoc: section %s (set %s=1 to write it into BENCHMARKS.md):\n%s", name, EnvWrite, markdown)
		return
	}
	dir, err := root()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "BENCHMARKS.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("benchdoc: %v", err)
	}
	out, err := replace(old, name, markdown)
	if err != nil {
		t.Fatalf("benchdoc: %s: %v", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatalf("benchdoc: %v", err)
	}
	t.Logf("benchdoc: wrote section %s of %s", name, path)
}

// replace puts body between the markers of section name in doc, or
// appends the section when doc has none.
func replace(doc []byte, name, body string) ([]byte, error) {
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	body = strings.TrimRight(body, "\n") + "\n"
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	switch {
	case i < 0 && j < 0:
		var b bytes.Buffer
		b.Write(bytes.TrimRight(doc, "\n"))
		fmt.Fprintf(&b, "\n\n%s\n%s%s\n", begin, body, end)
		return b.Bytes(), nil
	case i < 0 || j < i:
		return nil, fmt.Errorf("section %s: markers %q and %q are missing or out of order; fix them by hand", name, begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)])
	b.WriteString("\n" + body)
	b.Write(doc[j:])
	return b.Bytes(), nil
}

// Series is one named line (X, Y) or, for Bars, one value per label (Y).
type Series struct {
	Name string
	X, Y []float64
}

// Lines plots series as lines with points into plots/file (SVG).
func Lines(t testing.TB, file, title, xLabel, yLabel string, series ...Series) {
	t.Helper()
	p := newPlot(title, xLabel, yLabel)
	for i, s := range series {
		pts := make(plotter.XYs, len(s.X))
		for k := range s.X {
			pts[k] = plotter.XY{X: s.X[k], Y: s.Y[k]}
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			t.Fatalf("benchdoc: %s: %v", file, err)
		}
		l.Color, sc.Color = plotutil.Color(i), plotutil.Color(i)
		sc.Shape = plotutil.Shape(i)
		p.Add(l, sc)
		p.Legend.Add(s.Name, l, sc)
	}
	save(t, p, file)
}

// Bars plots one group of bars per series, a bar per label, into
// plots/file (SVG).
func Bars(t testing.TB, file, title, yLabel string, labels []string, series ...Series) {
	t.Helper()
	p := newPlot(title, "", yLabel)
	w := vg.Points(60 / float64(max(len(series), 1)))
	for i, s := range series {
		bars, err := plotter.NewBarChart(plotter.Values(s.Y), w)
		if err != nil {
			t.Fatalf("benchdoc: %s: %v", file, err)
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Color = color.Black
		bars.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
		p.Add(bars)
		p.Legend.Add(s.Name, bars)
	}
	p.NominalX(labels...)
	width := 16 * vg.Centimeter
	for _, l := range labels { // room for every label under its group
		width = max(width, vg.Length(len(labels))*vg.Length(len(l))*0.25*vg.Centimeter)
	}
	saveAs(t, p, file, width)
}

func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

func save(t testing.TB, p *plot.Plot, file string) { t.Helper(); saveAs(t, p, file, 16*vg.Centimeter) }

func saveAs(t testing.TB, p *plot.Plot, file string, width vg.Length) {
	t.Helper()
	if !Enabled() {
		t.Logf("benchdoc: plot %s not written (set %s=1)", file, EnvWrite)
		return
	}
	dir, err := root()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "plots", file)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.Save(width, 10*vg.Centimeter, path); err != nil {
		t.Fatalf("benchdoc: %s: %v", path, err)
	}
	t.Logf("benchdoc: wrote %s", path)
}
